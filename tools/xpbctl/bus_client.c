/* xpbctl's side of the bus (bus_client.h): the global options, a request
 * and its reply over NNG REQ, events over NNG SUB. */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "bus_client.h"
#include "nats_client.h"
#include "output.h"
#include "xpb_bus_nats_wire.h"
#include "xpb_error.h"
#include "xpb_nng_close.h"
#include "xpb_stanza.h"

#define CTL_RESEND_MARGIN_MS 60000 /* REQ resend time = timeout + this: never resend blindly */
#define CTL_CLOSE_MS 1000u         /* xpb_nng_close_bounded: a command's end waits no longer */
#define CTL_MAX_REPLY_BYTES (64u * 1024u * 1024u) /* NNG_OPT_RECVMAXSZ: big rosters, sessions */
#define CTL_MAX_EVENT_BYTES (64u * 1024u * 1024u) /* a batch of 64 events of up to 256 KiB */
#define CTL_SUB_QUEUE 1024                        /* NNG_OPT_RECVBUF on SUB, in messages */

/* Printable ASCII without spaces: a request id ends up in logs. */
static const char *request_id_check(const char *s)
{
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f) return "must be printable ASCII without spaces";
    return NULL;
}

const char xpbctl_global_intro[] =
    "    These may also come before the command name, as in\n"
    "    xpbctl --events URL tail or xpbctl --requests URL send ...\n";

const xpbctl_opt xpbctl_global_opts[] = {
    {.name = "--requests",
     .arg = "URL",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = CTL_URL_MAX - 1,
     .offset = XPBCTL_AT(xpbctl_globals, requests),
     .help = "the bridge's request socket (default\n"
             "ipc://$XDG_RUNTIME_DIR/xpbridge/requests, or\n"
             "ipc:///tmp/xpbridge-UID/requests without XDG_RUNTIME_DIR)"},
    {.name = "--events",
     .arg = "URL",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = CTL_URL_MAX - 1,
     .offset = XPBCTL_AT(xpbctl_globals, events),
     .help = "the bridge's event socket, read by tail (default: the\n"
             "same directory as --requests, \"events\")"},
    {.name = "--timeout",
     .arg = "MS",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = CTL_MAX_TIMEOUT_MS,
     .unit = "ms",
     .offset = XPBCTL_AT(xpbctl_globals, timeout),
     .help = "how long to wait for the reply (default 15000)"},
    {.name = "--request-id",
     .arg = "ID",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = XPB_BUS_MAX_REQUEST_ID,
     .check = request_id_check,
     .offset = XPBCTL_AT(xpbctl_globals, request_id),
     .help = "the request's id (default: 128 random bits in hex); a\n"
             "retry with the same id is answered by the bridge from its\n"
             "cache and never acts twice; printable ASCII"},
    {.name = "--nats",
     .arg = "URL",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = 4095,
     .offset = XPBCTL_AT(xpbctl_globals, nats),
     .help = "talk to bridges over NATS instead of NNG:\n"
             "nats://HOST:PORT, or several separated by commas.\n"
             "Requests go to xpb.req.<account-token> (whichever\n"
             "bridge owns the account answers; status and sessions\n"
             "without --account: xpb.ctl.any); tail reads stream\n"
             "XPB_EVENTS with a JetStream consumer and acknowledges\n"
             "each event once printed"},
    {.name = "--durable",
     .arg = "NAME",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = 64,
     .offset = XPBCTL_AT(xpbctl_globals, durable),
     .help = "tail --nats: the consumer's durable name; it keeps\n"
             "its place across runs (starting from the stream's\n"
             "first event) and runs that share it share the events.\n"
             "Without it: an ephemeral consumer from new events on"},
    {.name = "--json",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(xpbctl_globals, json),
     .help = "print the reply's result as one JSON object (field\n"
             "names as in bus.proto, 64-bit integers as strings); a\n"
             "reply without a result is printed whole; tail prints\n"
             "one object per event"},
    {0},
};

/* 128 random bits in hex: unique enough that two backends never collide. */
static int random_request_id(char *out, size_t outlen)
{
    unsigned char r[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, r, sizeof(r)) : -1;
    if (fd >= 0) close(fd);
    if (n != (ssize_t)sizeof(r) || outlen < 2 * sizeof(r) + 1) return -1;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

static int url_or_default(char *dst, size_t dstlen, const char *given, const char *name)
{
    if (given) return snprintf(dst, dstlen, "%s", given) < (int)dstlen ? 0 : -1;
    return xpb_bus_default_url(name, dst, dstlen) == 0 ? 0 : -1; /* the daemon's own rule */
}

int ctl_init(ctl *c, const char *cmd, const xpbctl_globals *g)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->json = g->json;
    c->timeout_set = g->timeout.set;
    c->timeout_ms = g->timeout.set ? (long)g->timeout.v : CTL_DEFAULT_TIMEOUT_MS;
    c->nats = g->nats;
    c->durable = g->durable;
    if (url_or_default(c->requests, sizeof(c->requests), g->requests, "requests") ||
        url_or_default(c->events, sizeof(c->events), g->events, "events")) {
        fprintf(stderr, "%s %s: $XDG_RUNTIME_DIR is too long for a socket path\n", xpbctl_prog, cmd);
        return XPBCTL_EXIT_USAGE;
    }
    if (g->request_id) {
        snprintf(c->request_id, sizeof(c->request_id), "%s", g->request_id);
    } else if (random_request_id(c->request_id, sizeof(c->request_id))) {
        fprintf(stderr, "%s %s: cannot read /dev/urandom for a request id\n", xpbctl_prog, cmd);
        return XPBCTL_EXIT_FAIL;
    }
    return 0;
}

/* ---- requests --------------------------------------------------------------- */
static int open_req(ctl *c, nng_socket *s)
{
    int rv = nng_req0_open(s);
    if (rv) {
        fprintf(stderr, "%s: %s: cannot open a REQ socket: %s\n", xpbctl_prog, c->cmd, nng_strerror(rv));
        return XPBCTL_EXIT_FAIL;
    }
    /* NNG's REQ resends after NNG_OPT_REQ_RESENDTIME; we retry ourselves, with
     * the same request id, so keep that past our own deadline. */
    rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, (nng_duration)c->timeout_ms);
    if (!rv) rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, (nng_duration)c->timeout_ms);
    if (!rv)
        rv = nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME,
                               (nng_duration)(c->timeout_ms + CTL_RESEND_MARGIN_MS));
    if (!rv) rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, CTL_MAX_REPLY_BYTES);
    if (!rv) rv = nng_dial(*s, c->requests, NULL, 0);
    if (rv) {
        fprintf(stderr, "%s: %s: cannot connect to %s: %s — is xpbridge running?\n", xpbctl_prog, c->cmd,
                c->requests, nng_strerror(rv));
        xpb_nng_close_bounded(*s, CTL_CLOSE_MS);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? XPBCTL_EXIT_USAGE : XPBCTL_EXIT_NOREPLY;
    }
    return 0;
}

static int decode_reply(ctl *c, const uint8_t *data, size_t len, Xpb__V1__Response **out)
{
    if (xpb_pb_check_depth(&xpb__v1__response__descriptor, data, len,
                           XPB_RECORD_DEFAULT_MAX_DEPTH + 1) ||
        !(*out = xpb__v1__response__unpack(NULL, len, data))) {
        fprintf(stderr, "%s: %s: undecodable reply (%zu bytes) from %s\n", xpbctl_prog, c->cmd,
                len, c->nats ? c->nats : c->requests);
        return XPBCTL_EXIT_FAIL;
    }
    if ((*out)->request_id && strcmp((*out)->request_id, c->request_id) != 0) {
        fprintf(stderr, "%s: %s: reply is for request %s, not %s\n", xpbctl_prog, c->cmd, (*out)->request_id,
                c->request_id);
        xpb__v1__response__free_unpacked(*out, NULL);
        *out = NULL;
        return XPBCTL_EXIT_FAIL;
    }
    return 0;
}

static int exchange(ctl *c, nng_socket s, const uint8_t *buf, size_t len, Xpb__V1__Response **out)
{
    nng_msg *m = NULL;
    int rv = nng_send(s, (void *)buf, len, 0);
    if (!rv) rv = nng_recvmsg(s, &m, 0);
    if (rv == NNG_ETIMEDOUT) {
        fprintf(stderr, "%s: %s: no reply from %s within %ld ms — is xpbridge running?\n", xpbctl_prog,
                c->cmd, c->requests, c->timeout_ms);
        return XPBCTL_EXIT_NOREPLY;
    }
    if (rv) {
        fprintf(stderr, "%s: %s: %s: %s\n", xpbctl_prog, c->cmd, c->requests, nng_strerror(rv));
        return XPBCTL_EXIT_NOREPLY;
    }
    int rc = decode_reply(c, nng_msg_body(m), nng_msg_len(m), out);
    nng_msg_free(m);
    return rc;
}

/* 0 with *out set (free with xpb__v1__response__free_unpacked), or an exit
 * status with the reason printed. */
static int call(ctl *c, Xpb__V1__Request *r, Xpb__V1__Response **out)
{
    r->has_api_version = 1;
    r->api_version = XPB_BUS_API_VERSION;
    r->request_id = c->request_id;
    if (!r->account && c->account) r->account = (char *)c->account;
    size_t len = xpb__v1__request__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return XPBCTL_EXIT_FAIL;
    xpb__v1__request__pack(r, buf);
    if (c->nats) {
        uint8_t *reply = NULL;
        size_t rlen = 0;
        int rc = nats_ctl_request(c->cmd, c->nats, r->account, buf, len, c->timeout_ms, &reply,
                                  &rlen);
        if (!rc) rc = decode_reply(c, reply, rlen, out);
        free(reply);
        free(buf);
        return rc;
    }
    nng_socket s;
    int rc = open_req(c, &s);
    if (!rc) {
        rc = exchange(c, s, buf, len, out);
        xpb_nng_close_bounded(s, CTL_CLOSE_MS);
    }
    free(buf);
    return rc;
}

/* An error reply: "xpbctl: CMD: ERR_NAME: text" and exit status 1. */
static int check_reply(ctl *c, const Xpb__V1__Response *resp)
{
    if (!resp->has_code || resp->code == XPB__V1__ERROR_CODE__OK) return 0;
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&xpb__v1__error_code__descriptor, (int)resp->code);
    fprintf(stderr, "%s: %s: %s: %s\n", xpbctl_prog, c->cmd, ev ? ev->name : "ERR_UNKNOWN",
            resp->error_text && resp->error_text[0] ? resp->error_text : "(no error text)");
    if (c->json) ctl_print_json(&resp->base);
    return XPBCTL_EXIT_FAIL;
}

int ctl_request(ctl *c, Xpb__V1__Request *r, reply_printer print)
{
    Xpb__V1__Response *resp = NULL;
    int rc = call(c, r, &resp);
    if (rc) return rc;
    rc = check_reply(c, resp);
    if (!rc) rc = print(c, resp);
    if (fflush(stdout) != 0 && !rc) rc = XPBCTL_EXIT_FAIL;
    xpb__v1__response__free_unpacked(resp, NULL);
    return rc;
}

int ctl_print_ok(ctl *c, const Xpb__V1__Response *resp)
{
    if (c->json) return ctl_print_json(&resp->base);
    puts("ok");
    return 0;
}

int ctl_missing_result(ctl *c)
{
    fprintf(stderr, "%s: %s: the reply is OK but carries no result\n", xpbctl_prog, c->cmd);
    return XPBCTL_EXIT_FAIL;
}

/* ---- events ------------------------------------------------------------------ */
struct ctl_sub {
    ctl *c;
    nng_socket s;
    nng_msg *msg; /* the message last returned */
    nng_mtx *mtx;
    nng_cv *cv;
    int pipes; /* connected to the bridge's PUB (NNG's pipe callback) */
    nats_ctl_sub *nats;
    const char *const *prefixes; /* over NATS: filtered here when more than one */
    size_t n;
};

static void on_pipe_add(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    (void)ev;
    ctl_sub *sub = arg;
    nng_mtx_lock(sub->mtx);
    sub->pipes++;
    nng_cv_wake(sub->cv);
    nng_mtx_unlock(sub->mtx);
}

int ctl_sub_wait_connected(ctl_sub *s, long ms)
{
    if (s->nats) return 0; /* a JetStream consumer misses nothing published after it */
    nng_time until = nng_clock() + (nng_time)ms;
    nng_mtx_lock(s->mtx);
    while (!s->pipes && nng_cv_until(s->cv, until) != NNG_ETIMEDOUT) {}
    int ok = s->pipes > 0;
    nng_mtx_unlock(s->mtx);
    if (!ok) return XPBCTL_EXIT_NOREPLY;
    nng_msleep(CTL_SUB_SETTLE_MS); /* the PUB side adds its end of the pipe just after */
    return 0;
}

/* One topic prefix ("kind/" or "kind/account/") as a subject; several, or
 * none: every event, filtered by prefix in ctl_sub_next. */
static int nats_subject(const char *const *prefixes, size_t n, char *out, size_t outlen)
{
    if (n != 1) return snprintf(out, outlen, "%s>", XPB_NATS_EVENT_PREFIX) < (int)outlen ? 0 : -1;
    char kind[32], account[3100] = "";
    const char *slash = strchr(prefixes[0], '/');
    if (!slash || (size_t)(slash - prefixes[0]) >= sizeof kind) return -1;
    memcpy(kind, prefixes[0], (size_t)(slash - prefixes[0]));
    kind[slash - prefixes[0]] = '\0';
    size_t al = strlen(slash + 1);
    if (al > 0 && al < sizeof account) memcpy(account, slash + 1, al - 1); /* drop the '/' */
    return xpb_nats_event_subject(kind, account[0] ? account : NULL, out, outlen) < outlen ? 0
                                                                                       : -1;
}

static int nats_sub_open(ctl *c, const char *const *prefixes, size_t n, ctl_sub *sub)
{
    char subject[10240];
    if (nats_subject(prefixes, n, subject, sizeof subject)) {
        fprintf(stderr, "xpbctl: %s: filter too long for a NATS subject\n", c->cmd);
        return XPBCTL_EXIT_USAGE;
    }
    sub->prefixes = prefixes;
    sub->n = n;
    return nats_ctl_sub_open(c->cmd, c->nats, c->durable, subject, &sub->nats);
}

static int nats_sub_next(ctl_sub *s, const uint8_t **data, size_t *len)
{
    for (;;) {
        int rc = nats_ctl_sub_next(s->nats, CTL_POLL_MS, data, len);
        if (rc == -1) return CTL_SUB_TIMEOUT;
        if (rc || s->n <= 1) return rc;
        for (size_t i = 0; i < s->n; i++)
            if (strncmp((const char *)*data, s->prefixes[i], strlen(s->prefixes[i])) == 0)
                return 0;
    }
}

static int subscribe(nng_socket s, const char *const *prefixes, size_t n)
{
    if (n == 0) return nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    for (size_t i = 0; i < n; i++) {
        int rv = nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, prefixes[i], strlen(prefixes[i]));
        if (rv) return rv;
    }
    return 0;
}

int ctl_sub_open(ctl *c, const char *const *prefixes, size_t n, ctl_sub **out)
{
    ctl_sub *sub = calloc(1, sizeof(*sub));
    if (!sub) return XPBCTL_EXIT_FAIL;
    sub->c = c;
    if (c->nats) {
        int rc = nats_sub_open(c, prefixes, n, sub);
        if (rc) free(sub);
        else *out = sub;
        return rc;
    }
    int rv = nng_sub0_open(&sub->s);
    if (rv) {
        fprintf(stderr, "%s: %s: cannot open a SUB socket: %s\n", xpbctl_prog, c->cmd, nng_strerror(rv));
        free(sub);
        return XPBCTL_EXIT_FAIL;
    }
    rv = nng_mtx_alloc(&sub->mtx);
    if (!rv) rv = nng_cv_alloc(&sub->cv, sub->mtx);
    if (!rv) rv = nng_pipe_notify(sub->s, NNG_PIPE_EV_ADD_POST, on_pipe_add, sub);
    if (!rv) rv = subscribe(sub->s, prefixes, n);
    if (!rv) rv = nng_socket_set_size(sub->s, NNG_OPT_RECVMAXSZ, CTL_MAX_EVENT_BYTES);
    if (!rv) rv = nng_socket_set_int(sub->s, NNG_OPT_RECVBUF, CTL_SUB_QUEUE);
    if (!rv) rv = nng_socket_set_ms(sub->s, NNG_OPT_RECVTIMEO, CTL_POLL_MS);
    /* Non-blocking dial: NNG keeps redialing, so tail may start first. */
    if (!rv) rv = nng_dial(sub->s, c->events, NULL, NNG_FLAG_NONBLOCK);
    if (rv) {
        fprintf(stderr, "%s: %s: %s: %s\n", xpbctl_prog, c->cmd, c->events, nng_strerror(rv));
        ctl_sub_close(sub);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? XPBCTL_EXIT_USAGE : XPBCTL_EXIT_FAIL;
    }
    *out = sub;
    return 0;
}

int ctl_sub_next(ctl_sub *s, const uint8_t **data, size_t *len)
{
    if (s->nats) return nats_sub_next(s, data, len);
    if (s->msg) nng_msg_free(s->msg);
    s->msg = NULL;
    int rv = nng_recvmsg(s->s, &s->msg, 0);
    if (rv == NNG_ETIMEDOUT) return CTL_SUB_TIMEOUT;
    if (rv) {
        fprintf(stderr, "%s: %s: %s: %s\n", xpbctl_prog, s->c->cmd, s->c->events, nng_strerror(rv));
        return XPBCTL_EXIT_FAIL;
    }
    *data = nng_msg_body(s->msg);
    *len = nng_msg_len(s->msg);
    return 0;
}

void ctl_sub_redeliver(ctl_sub *s)
{
    if (s && s->nats) nats_ctl_sub_redeliver(s->nats);
}

void ctl_sub_close(ctl_sub *s)
{
    if (!s) return;
    if (s->nats) {
        nats_ctl_sub_close(s->nats);
        free(s);
        return;
    }
    if (s->msg) nng_msg_free(s->msg);
    /* Bounded: NNG 1.5.2 can hang closing a SUB the bridge publishes to
     * (xpb_nng_close.h); xpbctl exits right after. */
    xpb_nng_close_bounded(s->s, CTL_CLOSE_MS);
    if (s->cv) nng_cv_free(s->cv);
    if (s->mtx) nng_mtx_free(s->mtx);
    free(s);
}
