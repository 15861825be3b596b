/* Pending iqs: every iq the daemon sends for a request (or for itself, the
 * XEP-0410 self-pings) waits here until the response with its id comes from
 * the peer it was sent to (RFC 6120 §8.2.3: the trust rules check the peer,
 * stanza_trust.c) or its timer fires (ERR_TIMEOUT). */
#define _DEFAULT_SOURCE /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "xpb_error.h"

/* ---- pending iqs ---------------------------------------------------------------------- */

void pending_free(xpb_daemon *d, struct pending_iq *p)
{
    if (p->prev) p->prev->next = p->next;
    else d->iqs = p->next;
    if (p->next) p->next->prev = p->prev;
    if (p->aprev) p->aprev->anext = p->anext;
    else p->acc->iqs = p->anext;
    if (p->anext) p->anext->aprev = p->aprev;
    xpb_timer_free(p->timer);
    free(p->id);
    free(p->peer);
    free(p->room);
    free(p->mam_qid);
    free(p);
}

static void on_iq_timeout(void *arg)
{
    struct pending_iq *p = arg;
    if (p->kind == IQ_CATCHUP)
        catchup_iq(p, NULL);
    else if (p->req)
        xpb_bus_reply_error(p->req, XPB__V1__ERROR_CODE__ERR_TIMEOUT, "no response within %u ms",
                            p->timeout_ms);
    else
        xpb_log(XPB_LOG_DEBUG, "session %s: self-ping to %s unanswered", p->acc->name, p->room);
    pending_free(p->d, p);
}

struct pending_iq *pending_add(struct account *a, enum iq_kind kind, const char *id,
                                      const char *peer, xpb_bus_request *req, unsigned ms)
{
    xpb_daemon *d = a->d;
    struct pending_iq *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->d = d;
    p->acc = a;
    p->kind = kind;
    p->req = req;
    p->timeout_ms = ms;
    p->id = strdup(id);
    p->peer = xstrdup(peer);
    if (xpb_timer_new(d->loop, on_iq_timeout, p, &p->timer) != 0) p->timer = NULL;
    p->next = d->iqs;
    if (d->iqs) d->iqs->prev = p;
    d->iqs = p;
    p->anext = a->iqs;
    if (a->iqs) a->iqs->aprev = p;
    a->iqs = p;
    if (!p->id || (peer && !p->peer) || !p->timer) {
        pending_free(d, p);
        return NULL;
    }
    xpb_timer_start(p->timer, ms);
    return p;
}

/* Answer (and forget) every iq of an account that goes away. */
void pending_drop_account(xpb_daemon *d, const struct account *a, const char *why)
{
    while (a->iqs) {
        struct pending_iq *p = a->iqs;
        if (p->req) xpb_bus_reply_error(p->req, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED, "%s", why);
        pending_free(d, p);
    }
}

/* The n-th pending iq of account a with this id (stanza_trust.h iq_pending):
 * only a's own pending iqs are looked at, whatever other accounts wait for. */
struct pending_iq *pending_nth(xpb_daemon *d, const struct account *a, const char *id,
                                      size_t n)
{
    (void)d;
    for (struct pending_iq *p = a->iqs; p; p = p->anext)
        if (strcmp(p->id, id) == 0 && n-- == 0) return p;
    return NULL;
}

static const char *condition_name(const xpb_stanza *st)
{
    if (!st->error) return "unknown error";
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &xpb__v1__error_condition__descriptor, (int)st->error->condition);
    return v ? v->name : "unknown error";
}

static void resolve_selfping(struct pending_iq *p, const xpb_stanza *st)
{
    if (st->type != XPB__V1__STANZA_TYPE__TYPE_ERROR) return;
    Xpb__V1__ErrorCondition c = st->error ? st->error->condition : 0;
    /* XEP-0410 §3.2: these two mean "joined, but the client does not answer pings". */
    if (c == XPB__V1__ERROR_CONDITION__CONDITION_FEATURE_NOT_IMPLEMENTED ||
        c == XPB__V1__ERROR_CONDITION__CONDITION_SERVICE_UNAVAILABLE)
        return;
    xpb_log(XPB_LOG_INFO, "session %s: self-ping to %s failed (%s); rejoining", p->acc->name,
            p->room, condition_name(st));
    for (struct room *r = p->acc->rooms; r; r = r->next)
        if (strcmp(r->room, p->room) == 0) {
            join_one(p->acc, r);
            break;
        }
}

void pending_resolve(struct pending_iq *p, xpb_stanza *st)
{
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    Xpb__V1__RosterQuery empty = XPB__V1__ROSTER_QUERY__INIT;
    if (p->kind == IQ_SELFPING) {
        resolve_selfping(p, st);
    } else if (p->kind == IQ_USER) {
        resp.result_case = XPB__V1__RESPONSE__RESULT_IQ_RESULT;
        resp.iq_result = st;
        xpb_bus_reply(p->req, &resp);
    } else if (st->type == XPB__V1__STANZA_TYPE__TYPE_RESULT) {
        resp.result_case = XPB__V1__RESPONSE__RESULT_ROSTER;
        resp.roster = st->roster ? st->roster : &empty;
        xpb_bus_reply(p->req, &resp);
    } else {
        xpb_bus_reply_error(p->req, XPB__V1__ERROR_CODE__ERR_INTERNAL,
                            "the server refused the roster request: %s", condition_name(st));
    }
    pending_free(p->d, p);
}

