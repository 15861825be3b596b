/* xpbctl's NATS client (nats_client.h). */
#include "nats_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "xpb_bus_nats_wire.h"
#include "xpbctl.h"

#define NATS_FETCH_BATCH 64
#define NATS_MAX_SERVERS 32

static int connect_to(const char *cmd, const char *servers, natsConnection **nc)
{
    char buf[4096];
    const char *list[NATS_MAX_SERVERS];
    int n = 0;
    if (snprintf(buf, sizeof buf, "%s", servers) >= (int)sizeof buf) {
        fprintf(stderr, "%s: %s: --nats is longer than %zu bytes\n", xpbctl_prog, cmd,
                sizeof buf - 1);
        return XPBCTL_EXIT_USAGE;
    }
    for (char *p = buf, *comma; p && *p && n < NATS_MAX_SERVERS; p = comma ? comma + 1 : NULL) {
        comma = strchr(p, ',');
        if (comma) *comma = '\0';
        list[n++] = p;
    }
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, list, n);
    if (s == NATS_OK) s = natsOptions_SetName(o, "xpbctl");
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fprintf(stderr, "%s: %s: cannot connect to NATS at %s: %s\n", xpbctl_prog, cmd,
                servers, natsStatus_GetText(s));
        return XPBCTL_EXIT_NOREPLY;
    }
    return 0;
}

int nats_ctl_request(const char *cmd, const char *servers, const char *account,
                     const uint8_t *req, size_t len, long timeout_ms, uint8_t **reply,
                     size_t *rlen)
{
    char subject[10240];
    if (account) {
        if (xpb_nats_request_subject(account, subject, sizeof subject) >= sizeof subject)
            return XPBCTL_EXIT_USAGE;
    } else {
        snprintf(subject, sizeof subject, "%s", XPB_NATS_CTL_ANY);
    }
    natsConnection *nc = NULL;
    int rc = connect_to(cmd, servers, &nc);
    if (rc) return rc;
    natsMsg *m = NULL;
    natsStatus s = natsConnection_Request(&m, nc, subject, req, (int)len, timeout_ms);
    if (s == NATS_OK) {
        *rlen = (size_t)natsMsg_GetDataLength(m);
        *reply = malloc(*rlen ? *rlen : 1);
        if (*reply) memcpy(*reply, natsMsg_GetData(m), *rlen);
        else rc = XPBCTL_EXIT_FAIL;
    } else {
        fprintf(stderr, "%s: %s: no reply on %s within %ld ms: %s%s\n", xpbctl_prog, cmd,
                subject, timeout_ms, natsStatus_GetText(s),
                s == NATS_NO_RESPONDERS ? " (no bridge owns the account now)" : "");
        rc = XPBCTL_EXIT_NOREPLY;
    }
    natsMsg_Destroy(m);
    natsConnection_Destroy(nc);
    return rc;
}

struct nats_ctl_sub {
    const char *cmd;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    natsMsgList list;
    int next;          /* index in list of the next message to hand out */
    natsMsg *last;     /* handed out, acknowledged on the next call */
    uint8_t *frame;
    unsigned warned; /* transient fetch errors reported */
};

int nats_ctl_sub_open(const char *cmd, const char *servers, const char *durable,
                      const char *subject, nats_ctl_sub **out)
{
    nats_ctl_sub *s = calloc(1, sizeof *s);
    if (!s) return XPBCTL_EXIT_FAIL;
    s->cmd = cmd;
    int rc = connect_to(cmd, servers, &s->nc);
    if (rc) {
        free(s);
        return rc;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = XPB_NATS_STREAM;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = durable ? js_DeliverAll : js_DeliverNew;
    so.Config.InactiveThreshold = durable ? 0 : 30ll * 1000000000; /* an ephemeral goes away */
    jsErrCode jerr = 0;
    natsStatus st = natsConnection_JetStream(&s->js, s->nc, NULL);
    if (st == NATS_OK) st = js_PullSubscribe(&s->sub, s->js, subject, durable, NULL, &so, &jerr);
    if (st != NATS_OK) {
        fprintf(stderr, "%s: %s: cannot consume %s from stream %s: %s (%d)\n", xpbctl_prog,
                cmd, subject, XPB_NATS_STREAM, natsStatus_GetText(st), (int)jerr);
        nats_ctl_sub_close(s);
        return XPBCTL_EXIT_FAIL;
    }
    *out = s;
    return 0;
}

/* "xpb.ev.<kind>.<token>" -> "kind/account/" NUL data. */
static int make_frame(nats_ctl_sub *s, natsMsg *m, const uint8_t **data, size_t *len)
{
    const char *subj = natsMsg_GetSubject(m);
    size_t pl = strlen(XPB_NATS_EVENT_PREFIX);
    const char *kind = subj + pl, *dot = strncmp(subj, XPB_NATS_EVENT_PREFIX, pl) == 0
                                            ? strchr(kind, '.') : NULL;
    char account[3100];
    if (!dot || xpb_nats_account_untoken(dot + 1, account, sizeof account) != 0) return -1;
    size_t kl = (size_t)(dot - kind), al = strlen(account), dl = (size_t)natsMsg_GetDataLength(m);
    free(s->frame);
    s->frame = malloc(kl + al + 3 + dl);
    if (!s->frame) return -1;
    memcpy(s->frame, kind, kl);
    s->frame[kl] = '/';
    memcpy(s->frame + kl + 1, account, al);
    s->frame[kl + 1 + al] = '/';
    s->frame[kl + 2 + al] = '\0';
    memcpy(s->frame + kl + al + 3, natsMsg_GetData(m), dl);
    *data = s->frame;
    *len = kl + al + 3 + dl;
    return 0;
}

int nats_ctl_sub_next(nats_ctl_sub *s, long poll_ms, const uint8_t **data, size_t *len)
{
    if (s->last) natsMsg_Ack(s->last, NULL); /* the caller is done with it */
    s->last = NULL;
    for (;;) {
        if (s->next >= s->list.Count) {
            natsMsgList_Destroy(&s->list);
            memset(&s->list, 0, sizeof s->list);
            s->next = 0;
            jsErrCode jerr = 0;
            natsStatus st = natsSubscription_Fetch(&s->list, s->sub, NATS_FETCH_BATCH, poll_ms,
                                                   &jerr);
            if (st == NATS_TIMEOUT) return -1;
            if (st == NATS_CONNECTION_CLOSED || st == NATS_INVALID_SUBSCRIPTION) {
                fprintf(stderr, "%s: %s: fetch from %s: %s (%d)\n", xpbctl_prog, s->cmd,
                        XPB_NATS_STREAM, natsStatus_GetText(st), (int)jerr);
                return XPBCTL_EXIT_FAIL;
            }
            if (st != NATS_OK) { /* a node lost, a consumer leader being elected: again */
                if (!s->warned++)
                    fprintf(stderr, "%s: %s: fetch from %s: %s (%d); retrying\n", xpbctl_prog,
                            s->cmd, XPB_NATS_STREAM, natsStatus_GetText(st), (int)jerr);
                nats_Sleep(poll_ms);
                return -1;
            }
            if (s->list.Count == 0) return -1;
        }
        natsMsg *m = s->list.Msgs[s->next++];
        if (make_frame(s, m, data, len) == 0) {
            s->last = m;
            return 0;
        }
        natsMsg_Ack(m, NULL); /* not one of ours: skip it */
    }
}

void nats_ctl_sub_redeliver(nats_ctl_sub *s)
{
    if (s->last) natsMsg_Nak(s->last, NULL);
    s->last = NULL;
    for (; s->next < s->list.Count; s->next++) natsMsg_Nak(s->list.Msgs[s->next], NULL);
}

void nats_ctl_sub_close(nats_ctl_sub *s)
{
    if (!s) return;
    if (s->last) natsMsg_Ack(s->last, NULL);
    natsMsgList_Destroy(&s->list);
    natsSubscription_Destroy(s->sub);
    jsCtx_Destroy(s->js);
    natsConnection_Destroy(s->nc);
    free(s->frame);
    free(s);
}
