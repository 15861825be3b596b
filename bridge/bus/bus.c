/* The NNG bus: events batched per topic on a PUB socket, requests served on a
 * REP socket through NNG contexts, with a response cache keyed by request id.
 * Wire format and semantics: docs/bus.md and proto/xpb/v1/bus.proto. */
#define _DEFAULT_SOURCE /* S_ISVTX */
#include "bus_internal.h"
#include "xpb_bus.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "xpb_error.h"
#include "xpb_stanza.h"

/* Wire levels of a Request: a record level of a stanza is at most two wire
 * levels (Element and its Node wrapper) plus a trailing Node (the bound
 * xpb_stanza_unpack uses), and Request -> SendStanza/SendIq sit above the
 * Stanza. xpb_stanza_check applies the record depth limit afterwards. */
#define REQUEST_MAX_DEPTH (2u * XPB_RECORD_DEFAULT_MAX_DEPTH + 1u + 2u)
#define PUB_RECVMAXSZ 4096u /* PUB never receives; bounded all the same */
#define ERRTEXT_MAX 512
/* Topics whose last seq is remembered for EventBatch.prev_seq; the least
 * recently published one is forgotten first (its next batch says 0). */
#define BUS_MAX_TOPICS 4096u
#define TOPIC_BUCKETS 1024u /* power of two */

/* Why contexts rather than a raw REP socket: a context keeps the REQ
 * backtrace for us, so the reply needs no manual header handling, and each
 * context is one bounded in-flight slot. A slot is owned by NNG while it
 * receives or sends, and by the loop thread from QUEUED until it sends. */
enum slot_state {
    SLOT_RECV,    /* nng_ctx_recv pending */
    SLOT_QUEUED,  /* message received, waiting for the loop */
    SLOT_HANDLER, /* at the handler, owner of a dedupe entry */
    SLOT_WAITING, /* a resend waiting for the owner's answer */
    SLOT_SENDING, /* nng_ctx_send pending */
    SLOT_STOPPED,
};

struct dd_entry;

struct xpb_bus_request {
    xpb_bus *bus;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state; /* changed under bus->mu */
    nng_msg *msg;          /* QUEUED: the request bytes */
    struct xpb_bus_request *qnext;
    Xpb__V1__Request *req;  /* HANDLER: unpacked */
    struct dd_entry *entry; /* HANDLER or WAITING */
    struct xpb_bus_request *wnext;
    char id[XPB_BUS_MAX_REQUEST_ID + 1];
    int has_id;
    int control; /* HANDLER or WAITING: counted in st.inflight_control */
};

/* One remembered request id: in flight (owner + waiters) or answered (the
 * packed response, kept on an LRU list bounded by dedupe_entries). */
struct dd_entry {
    struct dd_entry *hnext, *lprev, *lnext;
    uint32_t hash;
    xpb_bus_request *owner, *waiters;
    uint8_t *resp;
    size_t resp_len;
    char id[XPB_BUS_MAX_REQUEST_ID + 1];
};

struct batch {
    struct batch *next;
    nng_msg *msg; /* topic NUL then EventBatch wire bytes */
    unsigned count;
    size_t topic_len;
    char topic[];
};

/* The last seq published on one topic, on a hash chain and an LRU list. */
struct topic_ent {
    struct topic_ent *hnext, *lprev, *lnext;
    uint32_t hash;
    uint64_t last_seq;
    size_t len;
    char name[];
};

struct xpb_bus {
    struct event_base *base;
    xpb_bus_config cfg;
    xpb_bus_handler handler;
    void *ud;
    char *events_url, *requests_url;
    mode_t events_dir_mode, requests_dir_mode; /* of ipc:// endpoints' directories */
    nng_socket pub, rep;
    int pub_open, rep_open;
    xpb_bus_request *slots;
    unsigned nslots;
    xpb_pack_plan *plan; /* events: packed on the loop thread only (codec/pack.c) */

    pthread_mutex_t mu; /* guards the queue, signalled, closing, slot states */
    xpb_bus_request *qhead, *qtail;
    int signalled, closing;
    int wake[2];
    struct event *wake_ev, *flush_ev;

    struct dd_entry **buckets;
    size_t nbuckets;
    struct dd_entry *lru_head, *lru_tail;
    unsigned done_count;

    struct batch *bhead, *btail;
    uint64_t seq;
    struct topic_ent *topics[TOPIC_BUCKETS];
    struct topic_ent *tlru_head, *tlru_tail; /* most recently published first */
    unsigned ntopics;
    xpb_bus_stats st;
};

void xpb_bus_config_init(xpb_bus_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_request_bytes = XPB_BUS_DEFAULT_MAX_REQUEST;
    c->batch_max = XPB_BUS_DEFAULT_BATCH_MAX;
    c->batch_flush_us = XPB_BUS_DEFAULT_BATCH_FLUSH_US;
    c->max_inflight = XPB_BUS_DEFAULT_MAX_INFLIGHT;
    c->dedupe_entries = XPB_BUS_DEFAULT_DEDUPE;
    c->batch_bytes = XPB_BUS_DEFAULT_BATCH_BYTES;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) memcpy(p, s, n);
    return p;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = malloc((size_t)n + 1);
    if (p == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static enum slot_state slot_get(xpb_bus_request *s)
{
    pthread_mutex_lock(&s->bus->mu);
    enum slot_state st = s->state;
    pthread_mutex_unlock(&s->bus->mu);
    return st;
}

static void slot_set(xpb_bus_request *s, enum slot_state st)
{
    pthread_mutex_lock(&s->bus->mu);
    s->state = st;
    pthread_mutex_unlock(&s->bus->mu);
}

/* ======================================================================
 * Endpoints: private directory, loopback rule, stale ipc sockets
 * ====================================================================== */

/* The default directory's rule is shared with clients (bus_wire.c). */
static int private_dir_path(const xpb_bus_config *cfg, char **out)
{
    char dir[4096];
    if (cfg->private_dir != NULL)
        *out = dup_str(cfg->private_dir);
    else if (xpb_bus_default_dir(dir, sizeof dir) != 0)
        return XPB_ETOOBIG;
    else
        *out = dup_str(dir);
    return *out == NULL ? XPB_ENOMEM : 0;
}

/* The directory holds the ipc sockets, whose permissions are the only access
 * control on the bus: it must be ours and writable by nobody else (a
 * pre-created /tmp/xpbridge-<uid> owned by someone else is refused). */
static int ensure_private_dir(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        set_err(err, errlen, "cannot create private_dir %s: %s", path, strerror(errno));
        return XPB_EINVAL;
    }
    if (lstat(path, &sb) != 0) {
        set_err(err, errlen, "cannot stat private_dir %s: %s", path, strerror(errno));
        return XPB_EINVAL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        set_err(err, errlen, "private_dir %s is not a directory (symlinks are refused)", path);
        return XPB_EINVAL;
    }
    if (sb.st_uid != geteuid()) {
        set_err(err, errlen, "private_dir %s is owned by uid %lu, not by this user (uid %lu)", path,
                (unsigned long)sb.st_uid, (unsigned long)geteuid());
        return XPB_EINVAL;
    }
    if ((sb.st_mode & 022) != 0) {
        set_err(err, errlen,
                "private_dir %s is writable by group or others (mode %04o); make it 0700 "
                "or choose another private_dir",
                path, (unsigned)(sb.st_mode & 07777));
        return XPB_EINVAL;
    }
    return 0;
}

static int has_scheme(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncmp(url, scheme, n) == 0;
}

/* Host part of scheme://host:port/path, brackets of IPv6 kept. */
static void url_host(const char *url, char *host, size_t hostlen)
{
    const char *p = strstr(url, "://");
    p = (p == NULL) ? url : p + 3;
    size_t n;
    if (*p == '[') {
        const char *e = strchr(p, ']');
        n = (e == NULL) ? strlen(p) : (size_t)(e - p) + 1;
    } else {
        n = strcspn(p, ":/");
    }
    if (n >= hostlen) n = hostlen - 1;
    memcpy(host, p, n);
    host[n] = '\0';
}

static int is_loopback_host(const char *h)
{
    return strncmp(h, "127.", 4) == 0 || strcmp(h, "[::1]") == 0 || strcmp(h, "localhost") == 0;
}

static int check_endpoint(const char *name, const char *url, int allow_remote, char *err,
                          size_t errlen)
{
    static const char *const net[] = {"tcp://", "tcp4://", "tcp6://", "ws://",
                                      "ws4://", "ws6://",  "wss://",  "tls+tcp://"};
    int networked = 0;
    for (size_t i = 0; i < sizeof net / sizeof net[0]; i++)
        networked |= has_scheme(url, net[i]);
    if (!networked || allow_remote) return 0;
    char host[256];
    url_host(url, host, sizeof host);
    if (is_loopback_host(host)) return 0;
    set_err(err, errlen,
            "%s %s is not a loopback address (127.0.0.1, [::1], localhost); the bus has no "
            "authentication, set allow_remote to listen on other interfaces",
            name, url);
    return XPB_EINVAL;
}

/* A socket file left by a bridge that died: unlink it if nobody listens on
 * it; refuse when someone does or when the path is not a socket. */
static int remove_stale_ipc(const char *name, const char *url, char *err, size_t errlen)
{
    const char *path = url + strlen("ipc://");
    struct stat sb;
    if (lstat(path, &sb) != 0) return 0;
    if (!S_ISSOCK(sb.st_mode)) {
        set_err(err, errlen, "%s %s: the path exists and is not a socket", name, url);
        return XPB_EINVAL;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        set_err(err, errlen, "%s %s: path too long for a unix socket", name, url);
        return XPB_EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    int live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (live) {
        set_err(err, errlen, "%s %s: another process is listening on it", name, url);
        return XPB_EINVAL;
    }
    unlink(path);
    return 0;
}

/* The directory part of an ipc:// path ("." for a bare name). */
static void ipc_dir_of(const char *path, char *dir, size_t dirlen)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n == 0) {
        snprintf(dir, dirlen, ".");
        return;
    }
    if (n >= dirlen) n = dirlen - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
}

/* The bus has no authentication: the socket file's mode and its directory
 * are the access control, for explicit endpoints as much as for the default
 * private directory. Whoever may write the directory may unlink or replace
 * our socket, so the directory must be owned by this user or root and be
 * writable by nobody else, unless it has the sticky bit (like /tmp), which
 * keeps others from removing or renaming our file. */
static int ipc_dir_ok(const char *name, const char *url, mode_t *dir_mode, char *err, size_t errlen)
{
    char dir[sizeof((struct sockaddr_un *)0)->sun_path + 8];
    ipc_dir_of(url + strlen("ipc://"), dir, sizeof dir);
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        set_err(err, errlen, "%s %s: directory %s: %s", name, url, dir, strerror(errno));
        return XPB_EINVAL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        set_err(err, errlen, "%s %s: %s is not a directory", name, url, dir);
        return XPB_EINVAL;
    }
    if (sb.st_uid != geteuid() && sb.st_uid != 0) {
        set_err(err, errlen,
                "%s %s: directory %s is owned by uid %lu, neither this user (uid %lu) nor root; "
                "its owner could replace the socket",
                name, url, dir, (unsigned long)sb.st_uid, (unsigned long)geteuid());
        return XPB_EINVAL;
    }
    if ((sb.st_mode & 022) != 0 && (sb.st_mode & S_ISVTX) == 0) {
        set_err(err, errlen,
                "%s %s: directory %s is writable by group or others without the sticky bit "
                "(mode %04o), so another user could replace the socket; use a directory only "
                "this user can write (such as the default private_dir)",
                name, url, dir, (unsigned)(sb.st_mode & 07777));
        return XPB_EINVAL;
    }
    *dir_mode = sb.st_mode;
    return 0;
}

/* The socket file's mode: owner only, plus the group when the directory
 * grants its group access and others none (a 0750 private_dir lets one group
 * connect); never others. NNG would otherwise leave it to the umask. */
static int ipc_socket_mode(mode_t dir_mode)
{
    int group = (dir_mode & S_IXGRP) != 0 && (dir_mode & S_IRWXO) == 0;
    return XPB_BUS_IPC_MODE | (group ? 0060 : 0);
}

static int resolve_urls(xpb_bus *b, char *err, size_t errlen)
{
    const xpb_bus_config *c = &b->cfg;
    if (c->events_url == NULL || c->requests_url == NULL) {
        char *dir = NULL;
        int rc = private_dir_path(c, &dir);
        if (rc == 0) rc = ensure_private_dir(dir, err, errlen);
        if (rc == 0 && c->events_url == NULL) b->events_url = dup_printf("ipc://%s/events", dir);
        if (rc == 0 && c->requests_url == NULL)
            b->requests_url = dup_printf("ipc://%s/requests", dir);
        free(dir);
        if (rc != 0) return rc;
    }
    if (b->events_url == NULL) b->events_url = dup_str(c->events_url != NULL ? c->events_url : "");
    if (b->requests_url == NULL)
        b->requests_url = dup_str(c->requests_url != NULL ? c->requests_url : "");
    if (b->events_url == NULL || b->requests_url == NULL) return XPB_ENOMEM;
    int rc = check_endpoint("events_url", b->events_url, c->allow_remote, err, errlen);
    if (rc == 0) rc = check_endpoint("requests_url", b->requests_url, c->allow_remote, err, errlen);
    if (rc == 0 && has_scheme(b->events_url, "ipc://"))
        rc = ipc_dir_ok("events_url", b->events_url, &b->events_dir_mode, err, errlen);
    if (rc == 0 && has_scheme(b->requests_url, "ipc://"))
        rc = ipc_dir_ok("requests_url", b->requests_url, &b->requests_dir_mode, err, errlen);
    if (rc == 0 && has_scheme(b->events_url, "ipc://"))
        rc = remove_stale_ipc("events_url", b->events_url, err, errlen);
    if (rc == 0 && has_scheme(b->requests_url, "ipc://"))
        rc = remove_stale_ipc("requests_url", b->requests_url, err, errlen);
    return rc;
}

/* ======================================================================
 * NNG threads: only move messages and wake the loop
 * ====================================================================== */

static void wake_loop_locked(xpb_bus *b)
{
    if (!b->signalled) {
        b->signalled = 1;
        char c = 1;
        /* A full pipe already means "wake up"; nothing to do on EAGAIN. */
        if (write(b->wake[1], &c, 1) < 0) {
        }
    }
}

static void slot_recv(xpb_bus_request *s)
{
    nng_aio_set_timeout(s->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(s->ctx, s->aio);
}

static void on_recv(xpb_bus_request *s)
{
    xpb_bus *b = s->bus;
    int rv = nng_aio_result(s->aio);
    pthread_mutex_lock(&b->mu);
    if (rv == 0 && !b->closing) {
        s->msg = nng_aio_get_msg(s->aio);
        s->state = SLOT_QUEUED;
        s->qnext = NULL;
        if (b->qtail != NULL)
            b->qtail->qnext = s;
        else
            b->qhead = s;
        b->qtail = s;
        wake_loop_locked(b);
        pthread_mutex_unlock(&b->mu);
        return;
    }
    if (rv == 0) /* arrived during shutdown: not answered (docs/bus.md) */
        nng_msg_free(nng_aio_get_msg(s->aio));
    int stop = b->closing || rv == NNG_ECLOSED || rv == NNG_ECANCELED;
    s->state = stop ? SLOT_STOPPED : SLOT_RECV;
    pthread_mutex_unlock(&b->mu);
    if (!stop) slot_recv(s);
}

static void on_send(xpb_bus_request *s)
{
    xpb_bus *b = s->bus;
    int rv = nng_aio_result(s->aio);
    if (rv != 0) nng_msg_free(nng_aio_get_msg(s->aio));
    pthread_mutex_lock(&b->mu);
    if (rv != 0) b->st.reply_errors++;
    int stop = b->closing;
    s->state = stop ? SLOT_STOPPED : SLOT_RECV;
    pthread_mutex_unlock(&b->mu);
    if (!stop) slot_recv(s);
}

static void aio_cb(void *arg)
{
    xpb_bus_request *s = arg;
    if (slot_get(s) == SLOT_SENDING)
        on_send(s);
    else
        on_recv(s);
}

/* ======================================================================
 * Replies
 * ====================================================================== */

static void slot_send_bytes(xpb_bus_request *s, const uint8_t *data, size_t len)
{
    xpb_bus *b = s->bus;
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, len) != 0) {
        /* Cannot answer: give the context back so the slot is not lost. */
        pthread_mutex_lock(&b->mu);
        b->st.reply_errors++;
        int stop = b->closing;
        s->state = stop ? SLOT_STOPPED : SLOT_RECV;
        pthread_mutex_unlock(&b->mu);
        if (!stop) slot_recv(s);
        return;
    }
    memcpy(nng_msg_body(m), data, len);
    b->st.replies++;
    slot_set(s, SLOT_SENDING);
    nng_aio_set_msg(s->aio, m);
    nng_aio_set_timeout(s->aio, XPB_BUS_SEND_TIMEOUT_MS);
    nng_ctx_send(s->ctx, s->aio);
}

/* Packs resp with api_version and request_id filled in; the caller's fields
 * are restored. *out is malloc'ed. */
static int pack_response(Xpb__V1__Response *resp, const char *id, uint8_t **out, size_t *len)
{
    Xpb__V1__Response saved = *resp;
    resp->has_api_version = 1;
    resp->api_version = XPB_BUS_API_VERSION;
    resp->request_id = (char *)id;
    resp->has_code = 1;
    size_t n = protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf != NULL) protobuf_c_message_pack(&resp->base, buf);
    *resp = saved;
    if (buf == NULL) return XPB_ENOMEM;
    *out = buf;
    *len = n;
    return 0;
}

/* An error reply that is not remembered (malformed requests, busy, shutdown):
 * the same bytes would get the same answer again anyway. */
static void answer_error(xpb_bus_request *s, Xpb__V1__ErrorCode code, const char *text)
{
    Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
    r.code = code;
    r.error_text = (char *)text;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (pack_response(&r, s->has_id ? s->id : NULL, &buf, &len) != 0) {
        slot_send_bytes(s, (const uint8_t *)"", 0);
        return;
    }
    slot_send_bytes(s, buf, len);
    free(buf);
}

/* ======================================================================
 * Dedupe cache
 * ====================================================================== */

static uint32_t hash_id(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static struct dd_entry *dd_find(xpb_bus *b, const char *id)
{
    uint32_t h = hash_id(id);
    for (struct dd_entry *e = b->buckets[h & (b->nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->id, id) == 0) return e;
    return NULL;
}

static struct dd_entry *dd_add(xpb_bus *b, const char *id)
{
    struct dd_entry *e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    memcpy(e->id, id, strlen(id) + 1);
    e->hash = hash_id(id);
    size_t i = e->hash & (b->nbuckets - 1);
    e->hnext = b->buckets[i];
    b->buckets[i] = e;
    return e;
}

static void dd_unhash(xpb_bus *b, struct dd_entry *e)
{
    struct dd_entry **pp = &b->buckets[e->hash & (b->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void lru_unlink(xpb_bus *b, struct dd_entry *e)
{
    if (e->lprev != NULL)
        e->lprev->lnext = e->lnext;
    else
        b->lru_head = e->lnext;
    if (e->lnext != NULL)
        e->lnext->lprev = e->lprev;
    else
        b->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push(xpb_bus *b, struct dd_entry *e)
{
    e->lprev = NULL;
    e->lnext = b->lru_head;
    if (b->lru_head != NULL)
        b->lru_head->lprev = e;
    else
        b->lru_tail = e;
    b->lru_head = e;
}

static void dd_evict(xpb_bus *b)
{
    while (b->done_count > b->cfg.dedupe_entries && b->lru_tail != NULL) {
        struct dd_entry *e = b->lru_tail;
        lru_unlink(b, e);
        dd_unhash(b, e);
        free(e->resp);
        free(e);
        b->done_count--;
    }
}

/* An in-flight entry that will never get an answer (shutdown): forget it. */
static void dd_drop(xpb_bus *b, struct dd_entry *e)
{
    dd_unhash(b, e);
    free(e->resp);
    free(e);
}

/* ======================================================================
 * Request intake on the loop thread
 * ====================================================================== */

static int op_needs_account(Xpb__V1__Request__OpCase op)
{
    return op != XPB__V1__REQUEST__OP_LIST && op != XPB__V1__REQUEST__OP_STATUS;
}

/* The stanza inside send or iq, checked like any record from outside. */
static int check_op_stanza(const Xpb__V1__Request *r, size_t max_string, char *text, size_t textlen,
                           Xpb__V1__ErrorCode *code)
{
    const Xpb__V1__Stanza *st = NULL;
    const char *field = NULL;
    if (r->op_case == XPB__V1__REQUEST__OP_SEND) {
        st = r->send->stanza;
        field = "send.stanza";
    } else if (r->op_case == XPB__V1__REQUEST__OP_IQ) {
        st = r->iq->stanza;
        field = "iq.stanza";
    } else {
        return 0;
    }
    if (st == NULL) {
        *code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
        snprintf(text, textlen, "%s is required", field);
        return -1;
    }
    xpb_record_limits lim = {.max_string = max_string};
    char cerr[256] = "";
    int crc = xpb_stanza_check(st, &lim, cerr, sizeof cerr);
    if (crc != 0) {
        *code = crc == XPB_EJID ? XPB__V1__ERROR_CODE__ERR_INVALID_JID
                                : XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
        snprintf(text, textlen, "%s: %s", field, cerr);
        return -1;
    }
    if (r->op_case == XPB__V1__REQUEST__OP_IQ &&
        (st->kind != XPB__V1__KIND__KIND_IQ || (st->type != XPB__V1__STANZA_TYPE__TYPE_GET &&
                                                st->type != XPB__V1__STANZA_TYPE__TYPE_SET))) {
        *code = XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
        snprintf(text, textlen, "iq.stanza must be an iq of type get or set");
        return -1;
    }
    return 0;
}

/* The envelope rules, in the order a client most needs to hear about them. */
static int validate(const Xpb__V1__Request *r, size_t max_string,
                    char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id, char *text, size_t textlen,
                    Xpb__V1__ErrorCode *code)
{
    *code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
    if (r->request_id != NULL && strlen(r->request_id) <= XPB_BUS_MAX_REQUEST_ID &&
        r->request_id[0] != '\0') {
        memcpy(id, r->request_id, strlen(r->request_id) + 1);
        *has_id = 1;
    }
    if (!r->has_api_version || r->api_version != XPB_BUS_API_VERSION) {
        *code = XPB__V1__ERROR_CODE__ERR_API_VERSION;
        if (r->has_api_version)
            snprintf(text, textlen, "api_version %u is not supported; this bridge speaks %u",
                     r->api_version, XPB_BUS_API_VERSION);
        else
            snprintf(text, textlen, "api_version is missing; this bridge speaks %u",
                     XPB_BUS_API_VERSION);
        return -1;
    }
    if (r->request_id == NULL || r->request_id[0] == '\0') {
        snprintf(text, textlen, "request_id is required");
        return -1;
    }
    if (!*has_id) {
        snprintf(text, textlen, "request_id is longer than %u bytes", XPB_BUS_MAX_REQUEST_ID);
        return -1;
    }
    if (r->op_case == XPB__V1__REQUEST__OP__NOT_SET) {
        snprintf(text, textlen, "no known operation in the request (op is missing)");
        return -1;
    }
    if (op_needs_account(r->op_case) && (r->account == NULL || r->account[0] == '\0')) {
        snprintf(text, textlen, "account is required for this operation");
        return -1;
    }
    return check_op_stanza(r, max_string, text, textlen, code);
}

/* Whether a wire-check failure lies inside the stanza of send or iq: those
 * are record faults (ERR_INVALID_RECORD, as xpb_stanza_check reports them);
 * every other field is the request's own (ERR_BAD_REQUEST). */
static int in_op_stanza(const char *path)
{
    return strncmp(path, "send.stanza", 11) == 0 || strncmp(path, "iq.stanza", 9) == 0;
}

/* Bytes -> unpacked request, or an error text. Size is NNG's job
 * (RECVMAXSZ) and checked again here. Depth and every string field (NUL,
 * UTF-8, XML characters, max_string) are checked on the wire bytes before
 * unpacking: protobuf-c recurses without a limit and keeps a NUL inside a
 * string, where every later strlen would silently cut it. */
static Xpb__V1__Request *decode(const uint8_t *data, size_t len, size_t max_bytes,
                                size_t max_string, Xpb__V1__ErrorCode *code, int *bad_string,
                                char *text, size_t textlen)
{
    if (len > max_bytes) {
        snprintf(text, textlen, "request does not decode: %zu bytes, limit %zu", len, max_bytes);
        return NULL;
    }
    char why[ERRTEXT_MAX - 64] = "";
    int rc = xpb_pb_check_wire_text(&xpb__v1__request__descriptor, data, len, REQUEST_MAX_DEPTH,
                                    max_string, why, sizeof why);
    if (rc == XPB_EPBDEPTH) {
        snprintf(text, textlen, "request does not decode: nesting deeper than the limit of %u",
                 REQUEST_MAX_DEPTH);
        return NULL;
    }
    if (rc == XPB_ESTRLEN || rc == XPB_EUTF8 || rc == XPB_EXMLCHAR) {
        if (in_op_stanza(why)) *code = XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
        *bad_string = 1;
        snprintf(text, textlen, "%s", why);
        return NULL;
    }
    Xpb__V1__Request *r = NULL;
    if (rc == 0) r = xpb__v1__request__unpack(NULL, len, data);
    if (r == NULL) snprintf(text, textlen, "request does not decode: not a valid xpb.v1.Request");
    return r;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7fu) << shift;
        if ((b & 0x80u) == 0) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* A request refused for a string rule was well-formed protobuf: its
 * request_id (top-level field 2) is read from the wire bytes so the refusal
 * can carry it, when the id itself is valid text of at most 128 bytes. */
static void wire_request_id(const uint8_t *p, size_t len, char id[XPB_BUS_MAX_REQUEST_ID + 1],
                            int *has_id)
{
    const uint8_t *end = p + len;
    uint64_t tag, v;
    while (p < end && read_varint(&p, end, &tag) == 0) {
        unsigned wt = (unsigned)(tag & 7u);
        if (wt == 0 && read_varint(&p, end, &v) == 0) continue;
        if ((wt == 1 || wt == 5) && (size_t)(end - p) >= (wt == 1 ? 8u : 4u)) {
            p += wt == 1 ? 8 : 4;
            continue;
        }
        if (wt != 2 || read_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p)) return;
        size_t off;
        if ((tag >> 3) == 2 && v > 0 && v <= XPB_BUS_MAX_REQUEST_ID &&
            xpb_xml_check_text((const char *)p, (size_t)v, &off) == 0) {
            memcpy(id, p, (size_t)v);
            id[v] = '\0';
            *has_id = 1;
        }
        p += v;
    }
}

/* bus_internal.h; process() below is its only caller in the bridge. */
int xpb_bus_decode_request(const uint8_t *data, size_t len, size_t max_bytes, size_t max_string,
                           Xpb__V1__Request **out, char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id,
                           Xpb__V1__ErrorCode *code, char *text, size_t textlen)
{
    *out = NULL;
    *has_id = 0;
    *code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
    int bad_string = 0;
    Xpb__V1__Request *r =
        decode(data, len, max_bytes, max_string, code, &bad_string, text, textlen);
    if (r == NULL && bad_string) wire_request_id(data, len, id, has_id);
    if (r == NULL) return bad_string ? -2 : -1;
    if (validate(r, max_string, id, has_id, text, textlen, code) != 0) {
        xpb__v1__request__free_unpacked(r, NULL);
        return -1;
    }
    *out = r;
    return 0;
}

/* status, list and close: what an operator needs most when the bus is full
 * of slow requests, so they have slots of their own. */
static int is_control(const Xpb__V1__Request *r)
{
    return r->op_case == XPB__V1__REQUEST__OP_STATUS || r->op_case == XPB__V1__REQUEST__OP_LIST ||
           r->op_case == XPB__V1__REQUEST__OP_CLOSE;
}

/* Ordinary requests may hold max_inflight - 1 contexts, control requests
 * XPB_BUS_CONTROL_SLOTS more; so one context always stays free and a full
 * bridge says ERR_BUSY at once instead of leaving the client waiting. */
static int over_limit(xpb_bus *b, int control, char *text, size_t textlen)
{
    if (control && b->st.inflight_control >= XPB_BUS_CONTROL_SLOTS) {
        b->st.busy_control++;
        snprintf(text, textlen,
                 "too many status, list and close requests in flight (control slots %u)",
                 XPB_BUS_CONTROL_SLOTS);
        return 1;
    }
    if (!control && b->st.inflight - b->st.inflight_control + 1 >= b->cfg.max_inflight) {
        snprintf(text, textlen, "too many requests in flight (max_inflight %u)",
                 b->cfg.max_inflight);
        return 1;
    }
    return 0;
}

static void inflight_add(xpb_bus *b, xpb_bus_request *s, int control)
{
    s->control = control;
    b->st.inflight++;
    b->st.inflight_control += control != 0;
}

static void inflight_done(xpb_bus *b, xpb_bus_request *s)
{
    b->st.inflight--;
    b->st.inflight_control -= s->control != 0;
    s->control = 0;
}

/* A valid request: cached answer, join the in-flight one, busy, or handler. */
static void dispatch(xpb_bus *b, xpb_bus_request *s, Xpb__V1__Request *r)
{
    struct dd_entry *e = dd_find(b, s->id);
    if (e != NULL && e->owner == NULL) {
        b->st.dedupe_hits++;
        lru_unlink(b, e);
        lru_push(b, e);
        xpb__v1__request__free_unpacked(r, NULL);
        slot_send_bytes(s, e->resp, e->resp_len);
        return;
    }
    int control = is_control(r);
    char text[128];
    if (over_limit(b, control, text, sizeof text)) {
        b->st.busy++;
        xpb__v1__request__free_unpacked(r, NULL);
        answer_error(s, XPB__V1__ERROR_CODE__ERR_BUSY, text);
        return;
    }
    inflight_add(b, s, control);
    if (e != NULL) {
        b->st.dedupe_hits++;
        xpb__v1__request__free_unpacked(r, NULL);
        s->entry = e;
        s->wnext = e->waiters;
        e->waiters = s;
        slot_set(s, SLOT_WAITING);
        return;
    }
    e = dd_add(b, s->id);
    if (e == NULL) {
        inflight_done(b, s);
        xpb__v1__request__free_unpacked(r, NULL);
        answer_error(s, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    e->owner = s;
    s->entry = e;
    s->req = r;
    slot_set(s, SLOT_HANDLER);
    b->handler(b->ud, s, r);
}

static void process(xpb_bus *b, xpb_bus_request *s)
{
    char text[ERRTEXT_MAX];
    Xpb__V1__ErrorCode code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
    nng_msg *m = s->msg;
    s->msg = NULL;
    s->has_id = 0;
    s->entry = NULL;
    s->req = NULL;
    b->st.requests++;
    Xpb__V1__Request *r = NULL;
    int rc =
        xpb_bus_decode_request(nng_msg_body(m), nng_msg_len(m), b->cfg.max_request_bytes,
                               b->cfg.max_string, &r, s->id, &s->has_id, &code, text, sizeof text);
    nng_msg_free(m);
    if (rc == 0) {
        dispatch(b, s, r);
        return;
    }
    b->st.malformed++;
    b->st.bad_strings += rc == -2;
    answer_error(s, code, text);
}

static xpb_bus_request *take_queue(xpb_bus *b)
{
    pthread_mutex_lock(&b->mu);
    xpb_bus_request *q = b->qhead;
    b->qhead = b->qtail = NULL;
    b->signalled = 0;
    pthread_mutex_unlock(&b->mu);
    return q;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    xpb_bus *b = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    xpb_bus_request *q = take_queue(b);
    while (q != NULL) {
        xpb_bus_request *next = q->qnext;
        process(b, q);
        q = next;
    }
}

/* ======================================================================
 * Replies from the handler
 * ====================================================================== */

const char *xpb_bus_request_id(const xpb_bus_request *req)
{
    return req->id;
}

/* Sends the packed answer to the owner and every waiting resend, then keeps
 * it (the entry moves to the LRU list). */
static void complete_entry(xpb_bus *b, struct dd_entry *e, uint8_t *buf, size_t len)
{
    xpb_bus_request *owner = e->owner, *w = e->waiters;
    e->owner = NULL;
    e->waiters = NULL;
    e->resp = buf;
    e->resp_len = len;
    lru_push(b, e);
    b->done_count++;
    xpb__v1__request__free_unpacked(owner->req, NULL);
    owner->req = NULL;
    owner->entry = NULL;
    inflight_done(b, owner);
    slot_send_bytes(owner, buf, len);
    while (w != NULL) {
        xpb_bus_request *next = w->wnext;
        w->entry = NULL;
        inflight_done(b, w);
        slot_send_bytes(w, buf, len);
        w = next;
    }
    dd_evict(b); /* may free e and buf: nothing uses them after this */
}

int xpb_bus_reply(xpb_bus_request *req, Xpb__V1__Response *resp)
{
    if (req == NULL || resp == NULL || slot_get(req) != SLOT_HANDLER || req->entry == NULL)
        return XPB_EINVAL;
    xpb_bus *b = req->bus;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pack_response(resp, req->id, &buf, &len);
    if (rc != 0) {
        /* Answer anyway, without caching, so the client is not left waiting. */
        Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
        r.code = XPB__V1__ERROR_CODE__ERR_INTERNAL;
        r.error_text = "out of memory";
        rc = pack_response(&r, req->id, &buf, &len);
        if (rc != 0) return rc;
    }
    complete_entry(b, req->entry, buf, len);
    return 0;
}

int xpb_bus_reply_error(xpb_bus_request *req, Xpb__V1__ErrorCode code, const char *fmt, ...)
{
    char text[ERRTEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
    r.code = code;
    r.error_text = text;
    return xpb_bus_reply(req, &r);
}

/* ======================================================================
 * Events
 * ====================================================================== */

static int kind_ok(const char *kind)
{
    static const char *const kinds[] = {"message", "presence", "iq", "other", "state", "delivery"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kind != NULL && strcmp(kind, kinds[i]) == 0) return 1;
    return 0;
}

static void send_batch(xpb_bus *b, struct batch *bt)
{
    if (bt->count == 0) { /* its only event failed to append: nothing to send */
        nng_msg_free(bt->msg);
        free(bt);
        return;
    }
    int rv = nng_sendmsg(b->pub, bt->msg, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_msg_free(bt->msg);
        b->st.publish_errors++;
        b->st.events_dropped += bt->count;
    } else {
        b->st.batches++;
    }
    free(bt);
}

/* All open batches go out in the order they were opened, i.e. by their first
 * seq: the invariant docs/bus.md's gap detection relies on. */
void xpb_bus_flush(xpb_bus *b)
{
    struct batch *bt = b->bhead;
    b->bhead = b->btail = NULL;
    while (bt != NULL) {
        struct batch *next = bt->next;
        send_batch(b, bt);
        bt = next;
    }
    if (b->flush_ev != NULL) evtimer_del(b->flush_ev);
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    xpb_bus_flush(arg);
}

/* Whether name[0..len) is the topic "<kind>/<account>/". */
static int topic_is(const char *name, size_t len, const char *kind, const char *account)
{
    size_t kl = strlen(kind), al = strlen(account);
    return len == kl + al + 2 && memcmp(name, kind, kl) == 0 && name[kl] == '/' &&
           memcmp(name + kl + 1, account, al) == 0;
}

static uint32_t topic_hash(const char *kind, const char *account)
{
    uint32_t h = 2166136261u; /* FNV-1a over "<kind>/<account>/" */
    for (const char *s = kind; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *s = account; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return (h ^ '/') * 16777619u;
}

static void topic_lru_unlink(xpb_bus *b, struct topic_ent *t)
{
    if (t->lprev != NULL)
        t->lprev->lnext = t->lnext;
    else
        b->tlru_head = t->lnext;
    if (t->lnext != NULL)
        t->lnext->lprev = t->lprev;
    else
        b->tlru_tail = t->lprev;
    t->lprev = t->lnext = NULL;
}

static void topic_lru_push(xpb_bus *b, struct topic_ent *t)
{
    t->lnext = b->tlru_head;
    if (b->tlru_head != NULL)
        b->tlru_head->lprev = t;
    else
        b->tlru_tail = t;
    b->tlru_head = t;
}

/* Forgets the least recently published topic: its next batch has prev_seq 0. */
static void topic_evict(xpb_bus *b)
{
    struct topic_ent *t = b->tlru_tail;
    topic_lru_unlink(b, t);
    struct topic_ent **pp = &b->topics[t->hash & (TOPIC_BUCKETS - 1)];
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    free(t);
    b->ntopics--;
}

/* The topic's entry, now the most recently used; created with last_seq 0
 * (unknown) when new. NULL when out of memory. */
static struct topic_ent *topic_get(xpb_bus *b, const char *kind, const char *account)
{
    uint32_t h = topic_hash(kind, account);
    struct topic_ent **head = &b->topics[h & (TOPIC_BUCKETS - 1)];
    for (struct topic_ent *t = *head; t != NULL; t = t->hnext)
        if (t->hash == h && topic_is(t->name, t->len, kind, account)) {
            topic_lru_unlink(b, t);
            topic_lru_push(b, t);
            return t;
        }
    if (b->ntopics >= BUS_MAX_TOPICS) topic_evict(b);
    size_t tl = strlen(kind) + strlen(account) + 2;
    struct topic_ent *t = calloc(1, sizeof *t + tl + 1);
    if (t == NULL) return NULL;
    snprintf(t->name, tl + 1, "%s/%s/", kind, account);
    t->len = tl;
    t->hash = h;
    t->hnext = *head;
    *head = t;
    topic_lru_push(b, t);
    b->ntopics++;
    return t;
}

static void free_topics(xpb_bus *b)
{
    while (b->tlru_tail != NULL)
        topic_evict(b);
}

static size_t varint_put(uint8_t *p, uint64_t v);

/* EventBatch.prev_seq (field 2, varint): written once, before the events;
 * protobuf accepts fields in any order, so appending events stays cheap. */
static int batch_put_prev_seq(struct batch *bt, uint64_t prev_seq)
{
    uint8_t f[11];
    f[0] = 0x10;
    size_t fl = 1 + varint_put(f + 1, prev_seq);
    return nng_msg_append(bt->msg, f, fl) == 0 ? 0 : XPB_ENOMEM;
}

/* The open batch of the topic, or a new one that starts with prev_seq. */
static struct batch *batch_get(xpb_bus *b, const char *kind, const char *account, uint64_t prev_seq)
{
    size_t kl = strlen(kind), al = strlen(account), tl = kl + al + 2;
    for (struct batch *bt = b->bhead; bt != NULL; bt = bt->next)
        if (topic_is(bt->topic, bt->topic_len, kind, account)) return bt;
    struct batch *bt = calloc(1, sizeof *bt + tl + 1);
    if (bt == NULL) return NULL;
    snprintf(bt->topic, tl + 1, "%s/%s/", kind, account);
    bt->topic_len = tl;
    /* The NUL after the topic is part of the message: a prefix subscription
     * on "message/alice@x/" can then never match "message/alice@x.org/". */
    if (nng_msg_alloc(&bt->msg, 0) != 0 || nng_msg_append(bt->msg, bt->topic, tl + 1) != 0 ||
        batch_put_prev_seq(bt, prev_seq) != 0) {
        if (bt->msg != NULL) nng_msg_free(bt->msg);
        free(bt);
        return NULL;
    }
    if (b->btail != NULL)
        b->btail->next = bt;
    else
        b->bhead = bt;
    b->btail = bt;
    return bt;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        p[n++] = c | (v != 0 ? 0x80 : 0);
    } while (v != 0);
    return n;
}

/* EventBatch is "repeated Event event = 1": its wire bytes are just tag 0x0a,
 * length, event, repeated; so events are appended without re-packing. ev was
 * measured with plan just before (evlen). */
static int batch_append(struct batch *bt, xpb_pack_plan *plan, const Xpb__V1__Event *ev,
                        size_t evlen)
{
    uint8_t hdr[11];
    hdr[0] = 0x0a;
    size_t hl = 1 + varint_put(hdr + 1, evlen);
    size_t old = nng_msg_len(bt->msg);
    if (nng_msg_realloc(bt->msg, old + hl + evlen) != 0) return XPB_ENOMEM;
    uint8_t *p = (uint8_t *)nng_msg_body(bt->msg) + old;
    memcpy(p, hdr, hl);
    xpb_pack_plan_write(plan, &ev->base, p + hl);
    bt->count++;
    return 0;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int xpb_bus_publish(xpb_bus *b, const char *kind, const char *account, Xpb__V1__Event *ev)
{
    if (b == NULL || ev == NULL || !kind_ok(kind) || account == NULL || account[0] == '\0' ||
        strchr(account, '/') != NULL)
        return XPB_EINVAL;
    char *saved_account = ev->account;
    if (ev->account == NULL) ev->account = (char *)account;
    ev->has_seq = 1;
    ev->seq = ++b->seq;
    ev->has_timestamp_us = 1;
    ev->timestamp_us = now_us();
    size_t evlen = xpb_pack_plan_measure(b->plan, &ev->base);
    struct topic_ent *te = topic_get(b, kind, account);
    uint64_t prev_seq = te != NULL ? te->last_seq : 0;
    struct batch *bt = batch_get(b, kind, account, prev_seq);
    if (bt != NULL && bt->count > 0 && nng_msg_len(bt->msg) + evlen + 11 > b->cfg.batch_bytes) {
        xpb_bus_flush(b);
        bt = batch_get(b, kind, account, prev_seq);
    }
    int rc = bt == NULL ? XPB_ENOMEM : batch_append(bt, b->plan, ev, evlen);
    ev->account = saved_account;
    b->st.last_seq = b->seq;
    /* Even a dropped event is the topic's last: the next batch's prev_seq
     * then points at it, so subscribers see the loss. */
    if (te != NULL) te->last_seq = ev->seq;
    if (rc != 0) {
        b->st.publish_errors++;
        b->st.events_dropped++;
        xpb_bus_flush(b); /* the topic's next event opens a batch with prev_seq */
        return rc;
    }
    b->st.events++;
    if (bt->count >= b->cfg.batch_max) {
        xpb_bus_flush(b);
    } else if (!evtimer_pending(b->flush_ev, NULL)) {
        struct timeval tv = {.tv_sec = b->cfg.batch_flush_us / 1000000u,
                             .tv_usec = b->cfg.batch_flush_us % 1000000u};
        evtimer_add(b->flush_ev, &tv);
    }
    return 0;
}

/* ======================================================================
 * Life cycle
 * ====================================================================== */

/* nng_listen, with the socket file's mode set for ipc:// (ipc_socket_mode). */
static int listen_on(nng_socket sock, const char *name, const char *url, mode_t dir_mode, char *err,
                     size_t errlen)
{
    nng_listener l;
    int rv = nng_listener_create(&l, sock, url);
    if (rv == 0 && has_scheme(url, "ipc://"))
        rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, ipc_socket_mode(dir_mode));
    if (rv == 0) rv = nng_listener_start(l, 0);
    if (rv != 0) {
        set_err(err, errlen, "cannot listen on %s %s: %s", name, url, nng_strerror(rv));
        return XPB_EINVAL;
    }
    return 0;
}

static int open_sockets(xpb_bus *b, char *err, size_t errlen)
{
    int rv = nng_pub0_open(&b->pub);
    if (rv == 0) {
        b->pub_open = 1;
        nng_socket_set_size(b->pub, NNG_OPT_RECVMAXSZ, PUB_RECVMAXSZ);
        nng_socket_set_int(b->pub, NNG_OPT_SENDBUF, XPB_BUS_PUB_SENDBUF);
        int rc = listen_on(b->pub, "events_url", b->events_url, b->events_dir_mode, err, errlen);
        if (rc != 0) return rc;
        rv = nng_rep0_open(&b->rep);
    }
    if (rv == 0) {
        b->rep_open = 1;
        nng_socket_set_size(b->rep, NNG_OPT_RECVMAXSZ, b->cfg.max_request_bytes);
        int rc =
            listen_on(b->rep, "requests_url", b->requests_url, b->requests_dir_mode, err, errlen);
        if (rc != 0) return rc;
    }
    if (rv != 0) {
        set_err(err, errlen, "cannot open NNG sockets: %s", nng_strerror(rv));
        return XPB_ENOMEM;
    }
    return 0;
}

static int start_slots(xpb_bus *b, char *err, size_t errlen)
{
    b->slots = calloc(b->nslots, sizeof *b->slots);
    if (b->slots == NULL) return XPB_ENOMEM;
    for (unsigned i = 0; i < b->nslots; i++) {
        xpb_bus_request *s = &b->slots[i];
        s->bus = b;
        s->state = SLOT_STOPPED;
        int rv = nng_aio_alloc(&s->aio, aio_cb, s);
        if (rv == 0) rv = nng_ctx_open(&s->ctx, b->rep);
        if (rv != 0) {
            set_err(err, errlen, "cannot open NNG context %u: %s", i, nng_strerror(rv));
            return XPB_ENOMEM;
        }
        s->state = SLOT_RECV;
        slot_recv(s);
    }
    return 0;
}

static int init_loop(xpb_bus *b)
{
    if (pipe(b->wake) != 0) return XPB_ENOMEM;
    for (int i = 0; i < 2; i++) {
        fcntl(b->wake[i], F_SETFL, fcntl(b->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(b->wake[i], F_SETFD, FD_CLOEXEC);
    }
    b->wake_ev = event_new(b->base, b->wake[0], EV_READ | EV_PERSIST, on_wake, b);
    b->flush_ev = evtimer_new(b->base, on_flush_timer, b);
    if (b->wake_ev == NULL || b->flush_ev == NULL || event_add(b->wake_ev, NULL) != 0)
        return XPB_ENOMEM;
    return 0;
}

static void apply_defaults(xpb_bus_config *c)
{
    if (c->max_request_bytes == 0) c->max_request_bytes = XPB_BUS_DEFAULT_MAX_REQUEST;
    if (c->batch_max == 0) c->batch_max = XPB_BUS_DEFAULT_BATCH_MAX;
    if (c->batch_flush_us == 0) c->batch_flush_us = XPB_BUS_DEFAULT_BATCH_FLUSH_US;
    if (c->max_inflight < 2) /* one slot is kept to answer ERR_BUSY */
        c->max_inflight = c->max_inflight == 0 ? XPB_BUS_DEFAULT_MAX_INFLIGHT : 2;
    if (c->batch_bytes == 0) c->batch_bytes = XPB_BUS_DEFAULT_BATCH_BYTES;
    if (c->dedupe_entries > (1u << 22)) /* keeps the bucket table size sane */
        c->dedupe_entries = 1u << 22;
    if (c->max_inflight > 4096) c->max_inflight = 4096;
}

int xpb_bus_new(xpb_bus **out, struct event_base *base, const xpb_bus_config *cfg,
                xpb_bus_handler handler, void *ud, char *err, size_t errlen)
{
    set_err(err, errlen, "%s", "");
    *out = NULL;
    if (base == NULL || handler == NULL) return XPB_EINVAL;
    xpb_bus *b = calloc(1, sizeof *b);
    if (b == NULL) return XPB_ENOMEM;
    b->base = base;
    b->handler = handler;
    b->ud = ud;
    b->wake[0] = b->wake[1] = -1;
    pthread_mutex_init(&b->mu, NULL);
    if (cfg != NULL)
        b->cfg = *cfg;
    else
        xpb_bus_config_init(&b->cfg);
    apply_defaults(&b->cfg);
    b->nslots = b->cfg.max_inflight + XPB_BUS_CONTROL_SLOTS;
    b->nbuckets = 64;
    while (b->nbuckets < 2u * ((size_t)b->cfg.dedupe_entries + b->nslots))
        b->nbuckets *= 2;
    b->buckets = calloc(b->nbuckets, sizeof *b->buckets);
    b->plan = xpb_pack_plan_new();
    int rc = b->buckets == NULL || b->plan == NULL ? XPB_ENOMEM : resolve_urls(b, err, errlen);
    /* The caller's strings are not kept: the resolved copies are. */
    b->cfg.events_url = b->cfg.requests_url = b->cfg.private_dir = NULL;
    if (rc == 0) rc = init_loop(b);
    if (rc == 0) rc = open_sockets(b, err, errlen);
    if (rc == 0) rc = start_slots(b, err, errlen);
    if (rc != 0) {
        if (rc == XPB_ENOMEM && err != NULL && err[0] == '\0')
            set_err(err, errlen, "out of memory");
        xpb_bus_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- shutdown ---- */

static void answer_shutdown(xpb_bus_request *s)
{
    answer_error(s, XPB__V1__ERROR_CODE__ERR_INTERNAL, "shutting down");
}

/* Every request the loop holds gets its answer: at the handler, waiting on
 * a resend, or received and not yet decoded. */
static void answer_open_requests(xpb_bus *b)
{
    for (unsigned i = 0; i < b->nslots; i++) {
        xpb_bus_request *s = &b->slots[i];
        if (slot_get(s) == SLOT_HANDLER) {
            struct dd_entry *e = s->entry;
            for (xpb_bus_request *w = e->waiters; w != NULL; w = w->wnext)
                w->entry = NULL; /* still WAITING: answered below */
            xpb__v1__request__free_unpacked(s->req, NULL);
            s->req = NULL;
            s->entry = NULL;
            dd_drop(b, e);
            answer_shutdown(s);
        }
    }
    for (unsigned i = 0; i < b->nslots; i++) {
        xpb_bus_request *s = &b->slots[i];
        if (slot_get(s) == SLOT_WAITING) answer_shutdown(s);
    }
    for (xpb_bus_request *q = take_queue(b); q != NULL; q = q->qnext) {
        nng_msg_free(q->msg);
        q->msg = NULL;
        answer_shutdown(q);
    }
    b->st.inflight = 0;
    b->st.inflight_control = 0;
}

static void stop_slots(xpb_bus *b)
{
    for (unsigned i = 0; i < b->nslots; i++) {
        xpb_bus_request *s = &b->slots[i];
        if (s->aio != NULL && slot_get(s) == SLOT_SENDING)
            nng_aio_wait(s->aio); /* bounded by XPB_BUS_SEND_TIMEOUT_MS */
    }
    for (unsigned i = 0; i < b->nslots; i++)
        if (b->slots[i].aio != NULL) nng_aio_stop(b->slots[i].aio);
    /* A message that raced the stop was freed by on_recv (closing is set). */
    for (unsigned i = 0; i < b->nslots; i++) {
        xpb_bus_request *s = &b->slots[i];
        if (s->aio != NULL) {
            nng_ctx_close(s->ctx);
            nng_aio_free(s->aio);
        }
    }
}

static void free_dedupe(xpb_bus *b)
{
    for (size_t i = 0; b->buckets != NULL && i < b->nbuckets; i++) {
        struct dd_entry *e = b->buckets[i];
        while (e != NULL) {
            struct dd_entry *next = e->hnext;
            free(e->resp);
            free(e);
            e = next;
        }
    }
    free(b->buckets);
}

void xpb_bus_free(xpb_bus *b)
{
    if (b == NULL) return;
    if (b->pub_open) xpb_bus_flush(b);
    pthread_mutex_lock(&b->mu);
    b->closing = 1;
    pthread_mutex_unlock(&b->mu);
    if (b->slots != NULL) {
        answer_open_requests(b);
        stop_slots(b);
        free(b->slots);
    }
    if (b->rep_open) nng_close(b->rep);
    if (b->pub_open) nng_close(b->pub);
    if (b->wake_ev != NULL) event_free(b->wake_ev);
    if (b->flush_ev != NULL) event_free(b->flush_ev);
    for (int i = 0; i < 2; i++)
        if (b->wake[i] >= 0) close(b->wake[i]);
    free_dedupe(b);
    free_topics(b);
    free(b->events_url);
    free(b->requests_url);
    xpb_pack_plan_free(b->plan);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void xpb_bus_get_stats(const xpb_bus *b, xpb_bus_stats *out)
{
    xpb_bus *m = (xpb_bus *)b; /* the lock is not part of the logical state */
    pthread_mutex_lock(&m->mu);
    *out = b->st;
    pthread_mutex_unlock(&m->mu);
    out->last_seq = b->seq;
    out->dedupe_size = b->done_count;
}

const char *xpb_bus_events_url(const xpb_bus *b)
{
    return b->events_url;
}

const char *xpb_bus_requests_url(const xpb_bus *b)
{
    return b->requests_url;
}

const char *xpb_bus_library_version(void)
{
    return nng_version();
}
