/* The Delivery events of accepted sends (docs/bus.md, "Delivery events"):
 * a sent stanza is tracked by its session handle, and its outcomes are
 * published in order: QUEUED, SENT, ACKED (a message with itself as sent,
 * from filled in), RECEIVED (a XEP-0184 receipt from the addressee only),
 * or FAILED. The outbox and the group commit are sends.c's. */
#define _DEFAULT_SOURCE /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "xpb_arena.h"
#include "xpb_jid.h"

/* The bare JID of jid, normalised (RFC 7622); NULL when it is not a JID. */
static char *bare_of(const char *jid)
{
    char *norm = NULL;
    if (!jid || xpb_jid_normalize(jid, strlen(jid), &norm, NULL, 0) != 0) return NULL;
    char *slash = strchr(norm, '/');
    if (slash) *slash = '\0';
    return norm;
}

static void publish_outcome(struct account *a, Xpb__V1__Delivery__Outcome o,
                            const struct handle_ent *e, const char *reason, xpb_stanza *st)
{
    Xpb__V1__Delivery dl = XPB__V1__DELIVERY__INIT;
    dl.has_outcome = 1;
    dl.outcome = o;
    dl.request_id = e->request_id;
    dl.stanza_id = e->stanza_id;
    dl.reason = (char *)reason;
    dl.stanza = st;
    dl.has_resent = e->resent;
    dl.resent = e->resent;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_DELIVERY;
    ev.delivery = &dl;
    publish_event(a->d, "delivery", a->name, &ev);
}

/* ACKED for a message carries it as sent, from filled in (bus.proto). */
static xpb_stanza *acked_stanza(struct account *a, const struct handle_ent *e)
{
    if (!e->record) return NULL;
    xpb_daemon *d = a->d;
    xpb_stanza *st = NULL;
    xpb_arena_reset(d->arena);
    /* Bytes this process packed (sends_accept) from a record that passed
     * xpb_stanza_check: no depth walk and no second check (xpb_stanza_unpack
     * does both, for bytes from outside: the store, the bus). */
    st = (xpb_stanza *)protobuf_c_message_unpack(&xpb__v1__stanza__descriptor,
                                                 xpb_arena_pb_allocator(d->arena), e->record_len,
                                                 e->record);
    if (!st) return NULL;
    if (!st->from && !st->has_from_ref && a->full_jid) st->from = a->full_jid;
    return st;
}

/* While xpb_session_send runs, the daemon does not know the handle yet: what
 * the session reports then is kept and published by sends_track. */
static int keep_early(struct account *a, const xpb_session_event *sev)
{
    if (!a->in_send) return 0;
    if (sev->kind == XPB_SE_SENT) {
        a->early_sent = 1;
        return 1;
    }
    a->early_set = 1;
    a->early_handle = sev->handle;
    a->early_kind = sev->kind;
    snprintf(a->early_reason, sizeof a->early_reason, "%s", sev->reason ? sev->reason : "");
    return 1;
}

void publish_delivery(struct account *a, const xpb_session_event *sev)
{
    if (sev->kind == XPB_SE_SENT) {
        const struct handle_ent *e = find_handle(a, sev->handle);
        if (e) publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_SENT, e, NULL, NULL);
        else keep_early(a, sev);
        return;
    }
    struct handle_ent *e = take_handle(a, sev->handle);
    if (!e) {
        keep_early(a, sev);
        return; /* or the daemon's own stanzas (self-pings, rejoins) */
    }
    if (sev->kind == XPB_SE_ACKED) {
        sends_outbox_forget(a, e->outbox_id);
        publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED, e, NULL,
                        acked_stanza(a, e));
        if (e->received) /* held back so that the states come in their order */
            publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_RECEIVED, e, NULL, NULL);
    } else if (a->d->shutting_down && e->outbox_id) {
        /* Not failed for good: kept, and sent again at the next start. */
        char why[400];
        snprintf(why, sizeof why, "%s; kept in %s and sent again when the account starts "
                 "again", sev->reason ? sev->reason : "the bridge is shutting down",
                 a->d->state ? a->d->state->where : "the state directory");
        publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_FAILED, e, why, NULL);
    } else {
        sends_outbox_forget(a, e->outbox_id);
        publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_FAILED, e, sev->reason, NULL);
    }
    free_handle(e);
}

/* ---- tracking ------------------------------------------------------------------------ */

void delivery_want_receipt(struct account *a, const char *id, const char *to, const char *rid)
{
    char *peer = bare_of(to);
    struct receipt_wait *w = peer ? calloc(1, sizeof *w) : NULL;
    if (!w || !(w->stanza_id = strdup(id)) || (rid && !(w->request_id = strdup(rid)))) {
        if (w) free(w->stanza_id);
        free(w);
        free(peer);
        return;
    }
    w->peer = peer;
    w->next = a->receipts;
    a->receipts = w;
    if (++a->n_receipts <= XPB_DAEMON_RECEIPTS_MAX) return;
    struct receipt_wait **pp = &a->receipts; /* drop the oldest: the list's tail */
    while ((*pp)->next) pp = &(*pp)->next;
    struct receipt_wait *old = *pp;
    *pp = NULL;
    free(old->stanza_id);
    free(old->peer);
    free(old->request_id);
    free(old);
    a->n_receipts--;
}

struct handle_ent *delivery_track(struct account *a, uint64_t h, const char *request_id,
                                const char *sid, int kind, struct send_prep *p, int resent)
{
    int keep = p && kind == XPB__V1__KIND__KIND_MESSAGE && p->record.len;
    struct handle_ent *e =
        track_handle_record(a, h, request_id, sid, keep ? (const uint8_t *)p->record.data : NULL,
                            keep ? p->record.len : 0);
    if (!e) return NULL;
    e->outbox_id = p ? p->outbox_id : 0;
    e->resent = resent;
    return e;
}

/* QUEUED, then what the session reported inside xpb_session_send. */
void delivery_after_send(struct account *a, uint64_t h, const struct handle_ent *e)
{
    if (e) publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_QUEUED, e, NULL, NULL);
    if (a->early_sent && e)
        publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_SENT, e, NULL, NULL);
    a->early_sent = 0;
    if (a->early_set && a->early_handle == h) {
        xpb_session_event sev = {.kind = a->early_kind, .handle = h,
                                 .reason = a->early_reason[0] ? a->early_reason : NULL};
        a->early_set = 0;
        publish_delivery(a, &sev);
    }
}

void sends_track(struct account *a, uint64_t h, const char *request_id, const xpb_stanza *st,
                 struct send_prep *p)
{
    const struct handle_ent *e = delivery_track(a, h, request_id, p->id, st->kind, p, 0);
    if (p->receipt) delivery_want_receipt(a, p->id, st->to, request_id);
    delivery_after_send(a, h, e);
}

/* ---- receipts ----------------------------------------------------------------------- */

void sends_on_receipt(struct account *a, const xpb_stanza *st)
{
    char uuid[37];
    const char *id = st->receipt_received;
    if (!id && st->has_receipt_received_uuid && st->receipt_received_uuid.len == 16) {
        const uint8_t *u = st->receipt_received_uuid.data;
        snprintf(uuid, sizeof uuid,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                 u[14], u[15]);
        id = uuid;
    }
    if (!id || !a->receipts) return;
    struct receipt_wait **pp = &a->receipts;
    while (*pp && strcmp((*pp)->stanza_id, id) != 0) pp = &(*pp)->next;
    if (!*pp) return;
    struct receipt_wait *w = *pp;
    char *from = bare_of(st->from);
    if (!from || strcmp(from, w->peer) != 0) {
        /* XEP-0184 §8: only the addressee can confirm; anyone else is ignored. */
        a->d->ctr.receipts_spoofed++;
        xpb_log(XPB_LOG_WARN, "session %s: receipt for %s from %s ignored: it was sent to %s",
                a->name, id, st->from ? st->from : "(no from)", w->peer);
        free(from);
        return;
    }
    free(from);
    *pp = w->next;
    a->n_receipts--;
    a->d->ctr.receipts_received++;
    struct handle_ent *tracked = a->h_head;
    while (tracked && (!tracked->stanza_id || strcmp(tracked->stanza_id, id) != 0))
        tracked = tracked->next;
    if (tracked) {
        tracked->received = 1; /* RECEIVED follows its ACKED */
    } else {
        struct handle_ent e = {.request_id = w->request_id, .stanza_id = w->stanza_id};
        publish_outcome(a, XPB__V1__DELIVERY__OUTCOME__OUTCOME_RECEIVED, &e, NULL, NULL);
    }
    free(w->stanza_id);
    free(w->peer);
    free(w->request_id);
    free(w);
}

