/* The bridge-wide requests: list (one SessionInfo per live account) and
 * status (the counters and the bus's figures), answered from on_request
 * (requests.c). */
#include <stdint.h>
#include <time.h>

#include "daemon_internal.h"

static Xpb__V1__SessionInfo *session_info(xpb_daemon *d, struct account *a)
{
    xpb_arena *ar = d->rarena;
    Xpb__V1__SessionInfo *si = xpb_arena_calloc(ar, sizeof *si);
    if (!si) return NULL;
    xpb__v1__session_info__init(si);
    xpb_session_stats st;
    link_stats(a, &st);
    si->account = a->name;
    si->jid = a->full_jid;
    si->has_state = si->has_stanzas_in = si->has_stanzas_out = si->has_queued = 1;
    si->has_unacked = si->has_reconnects = si->has_resumptions = 1;
    si->state = daemon_bus_state(link_state(a)); /* no session: STOPPED */
    si->stanzas_in = st.stanzas_in;
    si->stanzas_out = st.stanzas_out;
    si->queued = st.queued;
    si->unacked = st.unacked;
    si->reconnects = st.reconnects;
    si->resumptions = st.resumptions;
    size_t n = 0;
    for (struct room *r = a->rooms; r; r = r->next) n++;
    si->room = n ? xpb_arena_alloc(ar, n * sizeof *si->room) : NULL;
    if (n && !si->room) return NULL;
    for (struct room *r = a->rooms; r; r = r->next) si->room[si->n_room++] = r->room;
    return si;
}

void req_list(xpb_daemon *d, xpb_bus_request *req)
{
    xpb_arena_reset(d->rarena);
    size_t n = 0;
    for (struct account *a = d->accounts; a; a = a->next) n += !a->dead;
    Xpb__V1__SessionList sl = XPB__V1__SESSION_LIST__INIT;
    sl.session = n ? xpb_arena_alloc(d->rarena, n * sizeof *sl.session) : NULL;
    for (struct account *a = d->accounts; a && (sl.session || !n); a = a->next) {
        if (a->dead) continue;
        Xpb__V1__SessionInfo *si = session_info(d, a);
        if (!si) break;
        sl.session[sl.n_session++] = si;
    }
    if (sl.n_session != n) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SESSIONS;
    resp.sessions = &sl;
    xpb_bus_reply(req, &resp);
}

void req_status(xpb_daemon *d, xpb_bus_request *req)
{
    xpb_daemon_counters c;
    xpb_daemon_get_counters(d, &c);
    xpb_bus_stats bs;
    xpb_bus_get_stats(d->bus, &bs);
    Xpb__V1__BridgeStatus st = XPB__V1__BRIDGE_STATUS__INIT;
    st.version = XPB_VERSION_STRING;
    st.has_uptime_s = st.has_sessions = st.has_sessions_online = 1;
    st.has_events_published = st.has_last_seq = 1;
    st.uptime_s = (uint64_t)(time(NULL) - d->started);
    st.sessions = c.n_accounts;
    st.sessions_online = c.sessions[XPB_MST_ONLINE];
    st.events_published = bs.events;
    st.last_seq = bs.last_seq;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_STATUS;
    resp.status = &st;
    xpb_bus_reply(req, &resp);
}

