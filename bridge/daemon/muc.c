/* MUC (XEP-0045): the join presence (§7.2.1), rejoining every room after a
 * fresh bind (§7.2), accepting the default configuration of a room we
 * created (§10.1.2, instant room), and XEP-0410 self-pings every
 * limits.muc_self_ping_s that rejoin a room we were silently dropped from. */
#define _DEFAULT_SOURCE /* strdup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "xpb_error.h"

/* ---- MUC (XEP-0045 §7.2.1 join, XEP-0410 self-ping) ------------------------------------- */

/* The join presence: to room/nick with <x xmlns='http://jabber.org/protocol/muc'>. */
int join_stanza(const struct room *r, xpb_stanza *st, Xpb__V1__MucJoin *mj,
                       Xpb__V1__MucHistory *hist, char *to, size_t tolen)
{
    xpb__v1__stanza__init(st);
    xpb__v1__muc_join__init(mj);
    xpb__v1__muc_history__init(hist);
    if ((size_t)snprintf(to, tolen, "%s/%s", r->room, r->nick) >= tolen) return XPB_EINVAL;
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_PRESENCE;
    st->to = to;
    st->muc = mj;
    mj->password = r->password;
    if (r->history >= 0) {
        hist->has_maxstanzas = 1;
        hist->maxstanzas = r->history;
        mj->history = hist;
    }
    return 0;
}

void join_one(struct account *a, const struct room *r)
{
    xpb_stanza st;
    Xpb__V1__MucJoin mj;
    Xpb__V1__MucHistory hist;
    char to[3 * 1024 + 8];
    if (join_stanza(r, &st, &mj, &hist, to, sizeof to) != 0) return;
    if (send_own(a, &st) == 0)
        xpb_log(XPB_LOG_INFO, "session %s: joining %s as %s", a->name, r->room, r->nick);
}

void rejoin_rooms(struct account *a)
{
    for (struct room *r = a->rooms; r; r = r->next) join_one(a, r);
}

/* XEP-0045 §10.1.2: a room we just created (status 201 on our own presence,
 * 110) stays locked until its owner configures it; accept the default
 * configuration ("instant room") so the join completes. Called only when the
 * trust rules found the room among the ones we asked to join (muc_created). */
void accept_instant_room(struct account *a, const xpb_node *el)
{
    /* Read the tree, not the record: servers order <item/> and <status/>
     * freely, and the record keeps an unusual order as a generic element. */
    const xpb_node *x = xpb_node_child(el, "http://jabber.org/protocol/muc#user", "x");
    int created = 0, self = 0;
    for (const xpb_node *c = x ? x->children : NULL; c; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT || strcmp(c->name, "status") != 0) continue;
        const xpb_attr *code = xpb_node_attr(c, "", "code");
        created |= code && strcmp(code->value, "201") == 0;
        self |= code && strcmp(code->value, "110") == 0;
    }
    const xpb_attr *from = xpb_node_attr(el, "", "from");
    if (!created || !self || !from) return;
    char room[3 * 1024 + 8];
    const char *slash = strchr(from->value, '/');
    size_t n = slash ? (size_t)(slash - from->value) : from->value_len;
    if (n >= sizeof room) return;
    memcpy(room, from->value, n);
    room[n] = '\0';
    Xpb__V1__Attribute type = XPB__V1__ATTRIBUTE__INIT;
    type.name = "type";
    type.value = "submit";
    Xpb__V1__Attribute *attrs[] = {&type};
    Xpb__V1__Element form = XPB__V1__ELEMENT__INIT;
    form.ns = "jabber:x:data";
    form.name = "x";
    form.n_attr = 1;
    form.attr = attrs;
    Xpb__V1__Node node = XPB__V1__NODE__INIT;
    node.node_case = XPB__V1__NODE__NODE_ELEMENT;
    node.element = &form;
    Xpb__V1__Node *children[] = {&node};
    Xpb__V1__Element query = XPB__V1__ELEMENT__INIT;
    query.ns = "http://jabber.org/protocol/muc#owner";
    query.name = "query";
    query.n_child = 1;
    query.child = children;
    Xpb__V1__Element *ext[] = {&query};
    xpb_stanza iq = XPB__V1__STANZA__INIT;
    iq.has_kind = iq.has_type = 1;
    iq.kind = XPB__V1__KIND__KIND_IQ;
    iq.type = XPB__V1__STANZA_TYPE__TYPE_SET;
    iq.to = room;
    char id[64];
    snprintf(id, sizeof id, "xpb-room-%" PRIu64, ++a->d->iq_counter);
    iq.id = id;
    iq.n_extension = 1;
    iq.extension = ext;
    if (send_own(a, &iq) == 0)
        xpb_log(XPB_LOG_INFO, "session %s: created %s; accepting the default configuration",
                a->name, room);
}

static void self_ping_account(struct account *a)
{
    for (struct room *r = a->rooms; r; r = r->next) {
        char to[3 * 1024 + 8];
        snprintf(to, sizeof to, "%s/%s", r->room, r->nick);
        xpb_stanza st = XPB__V1__STANZA__INIT;
        st.has_kind = st.has_type = st.has_ping = 1;
        st.kind = XPB__V1__KIND__KIND_IQ;
        st.type = XPB__V1__STANZA_TYPE__TYPE_GET;
        st.ping = 1;
        st.to = to;
        char id[64];
        snprintf(id, sizeof id, "xpb-sp-%" PRIu64, ++a->d->iq_counter);
        st.id = id;
        if (send_own(a, &st) != 0) return;
        struct pending_iq *p =
            pending_add(a, IQ_SELFPING, id, to, NULL, XPB_DAEMON_SELF_PING_TIMEOUT_MS);
        if (p) p->room = strdup(r->room);
    }
}

void on_ping_timer(void *arg)
{
    xpb_daemon *d = arg;
    xpb_timer_start(d->ping_timer, d->muc_ping_s * 1000u); /* every muc_self_ping_s */
    for (struct account *a = d->accounts; a; a = a->next) {
        if (!a->dead && !a->removing && link_state(a) == XPB_SS_ONLINE)
            self_ping_account(a);
    }
}

int room_add(struct account *a, const char *room, const char *nick, const char *pw,
                    int history, struct room **out)
{
    for (struct room *r = a->rooms; r; r = r->next)
        if (strcmp(r->room, room) == 0) { /* a new nick or password replaces the old */
            char *n = strdup(nick), *p = xstrdup(pw);
            if (!n || (pw && !p)) {
                free(n);
                free(p);
                return XPB_ENOMEM;
            }
            free(r->nick);
            free(r->password);
            r->nick = n;
            r->password = p;
            r->history = history;
            *out = r;
            return 0;
        }
    struct room *r = calloc(1, sizeof *r);
    if (!r) return XPB_ENOMEM;
    r->room = strdup(room);
    r->nick = strdup(nick);
    r->password = xstrdup(pw);
    r->history = history;
    if (!r->room || !r->nick || (pw && !r->password)) {
        free(r->room);
        free(r->nick);
        free(r->password);
        free(r);
        return XPB_ENOMEM;
    }
    struct room **tail = &a->rooms; /* keep config order */
    while (*tail) tail = &(*tail)->next;
    *tail = r;
    *out = r;
    return 0;
}

