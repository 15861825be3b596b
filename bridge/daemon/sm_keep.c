/* The XEP-0198 state kept across restarts (docs/durability.md, "Sends"):
 * saved through the state back end (d->state: the state directory or NATS
 * KV) before the session answers the server's <r/>, and within
 * XPB_DAEMON_SM_SAVE_MS of received stanzas, always after the bus flushed
 * their events; loaded at an account's start so the stream is resumed. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon_internal.h"
#include "xpb_log.h"

static void save_sm(struct account *a)
{
    xpb_daemon *d = a->d;
    if (!d->state || !link_present(a)) return;
    xpb_session_sm sm;
    char err[768];
    int rc;
    a->sm_dirty = 0;
    if (link_sm(a, &sm) == 0) {
        xpb_sm_state st = {.h_in = sm.h_in, .h_out = sm.h_acked,
                           .saved_us = (int64_t)time(NULL) * 1000000};
        snprintf(st.id, sizeof st.id, "%s", sm.id);
        snprintf(st.location, sizeof st.location, "%s", sm.location);
        snprintf(st.jid, sizeof st.jid, "%s", sm.jid);
        rc = d->state->sm_save(d, a->name, &st, err, sizeof err);
        if (!rc)
            xpb_log(XPB_LOG_DEBUG, "session %s: XEP-0198 state kept (h %" PRIu32 ", acked %" PRIu32
                                   ")", a->name, sm.h_in, sm.h_acked);
    } else {
        rc = d->state->sm_clear(d, a->name, err, sizeof err);
    }
    if (rc) xpb_log(XPB_LOG_WARN, "session %s: %s", a->name, err);
}

/* Before the kept h counts a received stanza, its event must be in the
 * journal: the bus is flushed first (a group commit), so a crash after the
 * save loses nothing the server will not send again. */
void sends_on_sm(struct account *a)
{
    if (!a->d->state) return;
    if (a->d->bus) xpb_bus_flush(a->d->bus);
    save_sm(a);
    /* The session answers the server's <r/> when this returns: the state must
     * be written by then. A wait per ack round (the 10 ms timer's saves are
     * not waited for). */
    if (state_threaded(a->d)) xpb_store_wait(a->d->store);
}

/* The timer saves the accounts marked dirty since it last ran, from a list:
 * a walk of every account cost a round over 10,000 of them every 10 ms
 * while any one received (issue 10: flat cost per account). */
static void on_sm_timer(void *arg)
{
    xpb_daemon *d = arg;
    d->sm_timer_armed = 0;
    if (d->bus) xpb_bus_flush(d->bus);
    struct account *list = d->sm_list;
    d->sm_list = NULL;
    while (list) {
        struct account *a = list;
        list = a->sm_next;
        a->sm_next = NULL;
        a->sm_listed = 0;
        if (a->sm_dirty && !a->dead) save_sm(a);
    }
}

void sm_keep_forget(struct account *a)
{
    if (!a->sm_listed) return;
    for (struct account **p = &a->d->sm_list; *p; p = &(*p)->sm_next)
        if (*p == a) {
            *p = a->sm_next;
            break;
        }
    a->sm_next = NULL;
    a->sm_listed = 0;
}

void sends_on_inbound(struct account *a)
{
    xpb_daemon *d = a->d;
    if (!d->state || !a->cfg.stream_management || a->sm_dirty) return;
    a->sm_dirty = 1;
    if (!a->sm_listed) { /* saved since by sends_on_sm, maybe: listed once all the same */
        a->sm_listed = 1;
        a->sm_next = d->sm_list;
        d->sm_list = a;
    }
    if (d->sm_timer_armed) return; /* never pushed back: saved within the bound */
    if (!d->sm_timer && xpb_timer_new(d->loop, on_sm_timer, d, &d->sm_timer) != 0) return;
    d->sm_timer_armed = 1;
    xpb_timer_start(d->sm_timer, d->state->async ? XPB_DAEMON_SM_SAVE_KV_MS
                                                 : XPB_DAEMON_SM_SAVE_MS);
}

/* The stream was closed (by us or for good): nothing left to resume. */
void sends_on_stopped(struct account *a)
{
    char err[768];
    if (a->d->state && a->d->state->sm_clear(a->d, a->name, err, sizeof err) != 0)
        xpb_log(XPB_LOG_WARN, "session %s: %s", a->name, err);
}

int sends_load_sm(struct account *a, xpb_session_sm *out)
{
    xpb_daemon *d = a->d;
    memset(out, 0, sizeof *out);
    if (!d->state || !a->cfg.stream_management) return 1;
    xpb_sm_state st;
    char err[768];
    int rc = d->state->sm_load(d, a->name, &st, err, sizeof err);
    if (rc < 0) xpb_log(XPB_LOG_WARN, "session %s: %s", a->name, err);
    if (rc != 0) return 1;
    snprintf(out->id, sizeof out->id, "%s", st.id);
    snprintf(out->location, sizeof out->location, "%s", st.location);
    out->h_in = st.h_in;
    out->h_acked = st.h_out;
    snprintf(out->jid, sizeof out->jid, "%s", st.jid);
    xpb_log(XPB_LOG_INFO, "session %s: stream management state kept (h %" PRIu32 "): trying to "
                          "resume the stream",
            a->name, st.h_in);
    return 0;
}

