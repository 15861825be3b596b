/* How the daemon reaches an account's session (docs/architecture.md,
 * "Several loops"): on the loop it was given (d->shards NULL: `loops = 0`,
 * and the unit tests' fake loop), or through its proxy on a worker loop
 * (xpb_shards). Every other file of the daemon goes through these. */
#include <stdio.h>
#include <string.h>

#include "daemon_internal.h"
#include "xpb_error.h"

int link_present(const struct account *a)
{
    return a->ls != NULL || a->ss != NULL;
}

static xpb_session *direct(const struct account *a)
{
    return a->ls ? xpb_loop_session_get(a->ls) : NULL;
}

int link_add(struct account *a, const xpb_session_config *sc, char *err, size_t errlen)
{
    xpb_daemon *d = a->d;
    if (d->shards) {
        int rc = xpb_shards_add(d->shards, a->name, sc, a->cfg.ca_file, &a->ss);
        if (rc == 0) xpb_shard_set_ud(a->ss, a);
        else snprintf(err, errlen, "%s", xpb_strerror(rc));
        return rc;
    }
    int rc = xpb_loop_add_session(d->loop, a->name, sc, a->cfg.ca_file, &a->ls, err, errlen);
    if (rc != 0) {
        a->ls = NULL;
        return rc;
    }
    xpb_loop_session_set_ud(a->ls, a);
    xpb_session_set_gauges(direct(a), &a->gauges);
    return 0;
}

void link_remove(struct account *a)
{
    if (a->ss) {
        xpb_shards_remove(a->ss);
        a->ss = NULL;
    }
    if (a->ls) {
        xpb_session_set_gauges(direct(a), NULL);
        xpb_loop_remove_session(a->d->loop, a->ls);
        a->ls = NULL;
    }
}

void link_close(struct account *a)
{
    if (a->ss) xpb_shard_close(a->ss);
    else if (direct(a)) xpb_session_close(direct(a));
}

xpb_session_state link_state(const struct account *a)
{
    if (a->ss) return xpb_shard_state(a->ss);
    xpb_session *s = direct(a);
    return s ? xpb_session_get_state(s) : XPB_SS_STOPPED;
}

void link_stats(const struct account *a, xpb_session_stats *st)
{
    memset(st, 0, sizeof *st);
    if (a->ss) xpb_shard_stats(a->ss, st);
    else if (direct(a)) xpb_session_get_stats(direct(a), st);
}

int link_sm(const struct account *a, xpb_session_sm *sm)
{
    if (a->ss) return xpb_shard_sm(a->ss, sm);
    xpb_session *s = direct(a);
    return s ? xpb_session_get_sm(s, sm) : 1;
}

int link_send(struct account *a, const xpb_stanza *st, int checked, uint64_t *h, char *id,
              size_t idlen, size_t *xml_bytes)
{
    if (a->ss) return xpb_shard_send(a->ss, st, checked, h, id, idlen, xml_bytes);
    xpb_session *s = direct(a);
    if (!s) return XPB_ENOTCONN;
    int rc = checked ? xpb_session_send_checked(s, st, h) : xpb_session_send(s, st, h);
    if (rc != 0) return rc;
    if (id) snprintf(id, idlen, "%s", xpb_session_last_id(s));
    if (xml_bytes) *xml_bytes = xpb_session_last_bytes(s);
    return 0;
}
