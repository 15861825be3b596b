/* xpbctl's bus commands end to end: the built xpbctl is spawned against a
 * scripted fake bridge (raw NNG REP and PUB sockets on ipc:// in a temporary
 * directory); we assert the Request it sent, its output and its exit status,
 * and the generated help pages and usage errors. */
#define _XOPEN_SOURCE 700 /* mkdtemp, realpath, nanosleep */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "xpb/v1/bus.pb-c.h"

#ifndef XPBCTL_PATH
#error "XPBCTL_PATH must name the built xpbctl"
#endif

extern char **environ;

#define WAIT_MS 5000       /* the longest any step may take (ASan included) */
#define SPAWN_MAX_ARGS 300 /* send's 256 BODY words and then some */

typedef struct fake {
    char dir[64];
    char req_url[128], ev_url[128];
    nng_socket rep, pub;
    atomic_int subscribers;
} fake;

typedef struct run {
    pid_t pid;
    char out_path[96], err_path[96];
    char *out, *err;
    int status;
} run;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void on_pipe_add(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    (void)ev;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static int setup(void **state)
{
    fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/xpbctl-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->req_url, sizeof(f->req_url), "ipc://%s/requests", f->dir);
    snprintf(f->ev_url, sizeof(f->ev_url), "ipc://%s/events", f->dir);
    assert_int_equal(nng_rep0_open(&f->rep), 0);
    assert_int_equal(nng_socket_set_ms(f->rep, NNG_OPT_RECVTIMEO, WAIT_MS), 0);
    assert_int_equal(nng_listen(f->rep, f->req_url, NULL, 0), 0);
    assert_int_equal(nng_pub0_open(&f->pub), 0);
    assert_int_equal(nng_pipe_notify(f->pub, NNG_PIPE_EV_ADD_POST, on_pipe_add, &f->subscribers),
                     0);
    assert_int_equal(nng_listen(f->pub, f->ev_url, NULL, 0), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fake *f = *state;
    char path[128];
    nng_close(f->rep);
    nng_close(f->pub);
    const char *files[] = {"requests",          "events",   "out",  "err", "pass",
                           "xpbridge/requests", "xpbridge", "batch"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        remove(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- running xpbctl -------------------------------------------------------- */
/* args: the command and its arguments, NULL-terminated. With bus set, the
 * fake's URLs and a generous timeout come first (later options override). */
static void spawn_ctl(fake *f, run *r, const char *const *args, bool bus, char **envp)
{
    const char *argv[SPAWN_MAX_ARGS];
    size_t n = 0;
    argv[n++] = XPBCTL_PATH;
    argv[n++] = args[0];
    if (bus) {
        const char *common[] = {"--requests", f->req_url,  "--events",
                                f->ev_url,    "--timeout", "5000"};
        for (size_t i = 0; i < 6; i++)
            argv[n++] = common[i];
    }
    for (size_t i = 1; args[i]; i++) {
        assert_true(n < SPAWN_MAX_ARGS - 2);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    memset(r, 0, sizeof(*r));
    snprintf(r->out_path, sizeof(r->out_path), "%s/out", f->dir);
    snprintf(r->err_path, sizeof(r->err_path), "%s/err", f->dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, r->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, r->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc =
        posix_spawn(&r->pid, XPBCTL_PATH, &fa, NULL, (char *const *)argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
}

static char *slurp(const char *path)
{
    size_t len;
    char *buf = xpb_test_read_file(path, &len);
    assert_non_null(buf);
    return buf;
}

/* Waits for the child (killing it after WAIT_MS) and collects its output. */
static void finish_ctl(run *r)
{
    int st = 0;
    for (int waited = 0; waitpid(r->pid, &st, WNOHANG) == 0; waited += 10) {
        if (waited > WAIT_MS) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            fail_msg("xpbctl did not exit in time");
        }
        sleep_ms(10);
    }
    r->out = slurp(r->out_path);
    r->err = slurp(r->err_path);
    if (!WIFEXITED(st)) fail_msg("xpbctl died: stderr: %s", r->err);
    r->status = WEXITSTATUS(st);
}

static void run_free(run *r)
{
    free(r->out);
    free(r->err);
}

/* ---- the fake bridge's request side ---------------------------------------- */
/* Receives one request and answers resp (request_id copied in) unless resp is
 * NULL. Returns the unpacked request (free_unpacked by the caller). */
static Xpb__V1__Request *serve_one(fake *f, Xpb__V1__Response *resp)
{
    nng_msg *m = NULL;
    assert_int_equal(nng_recvmsg(f->rep, &m, 0), 0);
    Xpb__V1__Request *req = xpb__v1__request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    assert_non_null(req);
    if (resp) {
        resp->has_api_version = 1;
        resp->api_version = 1;
        resp->request_id = req->request_id;
        size_t len = xpb__v1__response__get_packed_size(resp);
        uint8_t *buf = malloc(len + 1);
        assert_non_null(buf);
        xpb__v1__response__pack(resp, buf);
        assert_int_equal(nng_send(f->rep, buf, len, 0), 0);
        free(buf);
    }
    return req;
}

/* Spawn, serve one request, wait: the usual request test. */
static Xpb__V1__Request *call_ctl(fake *f, run *r, const char *const *args, Xpb__V1__Response *resp)
{
    spawn_ctl(f, r, args, true, NULL);
    Xpb__V1__Request *req = serve_one(f, resp);
    finish_ctl(r);
    assert_int_equal(req->api_version, 1);
    assert_non_null(req->request_id);
    return req;
}

static bool is_hex128(const char *s)
{
    if (strlen(s) != 32) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("expected '%s' in:\n%s", (needle), (hay));          \
    } while (0)

/* ---- send -------------------------------------------------------------------- */
static void test_send_message(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__SendResult sent = XPB__V1__SEND_RESULT__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    sent.stanza_id = "m1";
    sent.has_queued = sent.queued = 1;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp.sent = &sent;
    const char *args[] = {"send",     "--account", "a@x",  "--to", "b@x",   "--type",  "groupchat",
                          "--thread", "t1",        "--id", "m1",   "hello", "w<o>rld", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_true(is_hex128(req->request_id));
    assert_string_equal(req->account, "a@x");
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_SEND);
    const Xpb__V1__Stanza *st = req->send->stanza;
    assert_int_equal(st->kind, XPB__V1__KIND__KIND_MESSAGE);
    assert_int_equal(st->type, XPB__V1__STANZA_TYPE__TYPE_GROUPCHAT);
    assert_string_equal(st->to, "b@x");
    assert_string_equal(st->id, "m1");
    assert_int_equal(st->n_body, 1);
    assert_string_equal(st->body[0]->text, "hello w<o>rld");
    assert_non_null(st->thread);
    assert_string_equal(st->thread->id, "t1");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "m1 queued\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_send_xml_with_request_id(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__SendResult sent = XPB__V1__SEND_RESULT__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    sent.stanza_id = "gen-1";
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp.sent = &sent;
    const char *args[] = {"send",
                          "--account",
                          "a@x",
                          "--request-id",
                          "retry-7",
                          "--xml",
                          "<message to='b@x' type='chat'><body>hi</body></message>",
                          NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_string_equal(req->request_id, "retry-7");
    assert_string_equal(req->send->stanza->to, "b@x");
    assert_string_equal(req->send->stanza->body[0]->text, "hi");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "gen-1\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

/* --batch FILE: one send_batch with a stanza per non-blank line, one output
 * line per outcome in order; a refused one makes the exit status 1. */
static void test_send_batch_file(void **state)
{
    fake *f = *state;
    run r;
    char path[160];
    snprintf(path, sizeof(path), "%s/batch", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("<message to='b@x' type='chat'><body>one</body></message>\n\n"
          "<message to='c@x'><body>two</body></message>\r\n"
          "<presence to='d@x'/>\n",
          fp);
    fclose(fp);
    Xpb__V1__SendOutcome o0 = XPB__V1__SEND_OUTCOME__INIT, o1 = XPB__V1__SEND_OUTCOME__INIT,
                         o2 = XPB__V1__SEND_OUTCOME__INIT;
    o0.stanza_id = "s0";
    o1.has_code = 1;
    o1.code = XPB__V1__ERROR_CODE__ERR_QUEUE_FULL;
    o1.error_text = "queue full (queue_max 1000)";
    o2.stanza_id = "s2";
    o2.has_queued = o2.queued = 1;
    Xpb__V1__SendOutcome *outs[] = {&o0, &o1, &o2};
    Xpb__V1__SendBatchResult br = XPB__V1__SEND_BATCH_RESULT__INIT;
    br.n_result = 3;
    br.result = outs;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT_BATCH;
    resp.sent_batch = &br;
    const char *args[] = {"send", "--account", "a@x", "--batch", path, NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_SEND_BATCH);
    assert_int_equal(req->send_batch->n_send, 3);
    assert_string_equal(req->send_batch->send[0]->stanza->body[0]->text, "one");
    assert_string_equal(req->send_batch->send[1]->stanza->to, "c@x");
    assert_int_equal(req->send_batch->send[2]->stanza->kind, XPB__V1__KIND__KIND_PRESENCE);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "s0\nerror ERR_QUEUE_FULL: queue full (queue_max 1000)\ns2 queued\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
    /* --batch with a message's own options is a usage error, no request */
    const char *bad[] = {"send", "--account", "a@x", "--batch", path, "--to", "b@x", NULL};
    spawn_ctl(f, &r, bad, true, NULL);
    finish_ctl(&r);
    assert_int_equal(r.status, 2);
    run_free(&r);
}

/* An error code: "xpbctl: CMD: ERR_NAME: text", exit 1, nothing on stdout. */
static void test_error_reply(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.has_code = 1;
    resp.code = XPB__V1__ERROR_CODE__ERR_UNKNOWN_ACCOUNT;
    resp.error_text = "no session for a@x";
    const char *args[] = {"send", "--account", "a@x", "--to", "b@x", "hi", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "xpbctl: send: ERR_UNKNOWN_ACCOUNT: no session for a@x\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_no_reply_times_out(void **state)
{
    fake *f = *state;
    run r;
    char want[256];
    const char *args[] = {"status", "--timeout", "300", NULL};
    spawn_ctl(f, &r, args, true, NULL);
    Xpb__V1__Request *req = serve_one(f, NULL); /* received, never answered */
    finish_ctl(&r);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_STATUS);
    assert_int_equal(r.status, 3);
    snprintf(want, sizeof(want),
             "xpbctl: status: no reply from %s within 300 ms — is xpbridge running?\n", f->req_url);
    assert_string_equal(r.err, want);
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_unreachable(void **state)
{
    fake *f = *state;
    run r;
    char url[160];
    snprintf(url, sizeof(url), "ipc://%s/nobody-here", f->dir);
    const char *args[] = {"sessions", "--requests", url, NULL};
    spawn_ctl(f, &r, args, false, NULL);
    finish_ctl(&r);
    assert_int_equal(r.status, 3);
    assert_contains(r.err, url);
    assert_contains(r.err, "is xpbridge running?");
    run_free(&r);
}

/* No --requests: $XDG_RUNTIME_DIR/xpbridge/requests, the bridge's default. */
static void test_default_url(void **state)
{
    fake *f = *state;
    run r;
    char dir[128], url[160], xdg[128];
    snprintf(dir, sizeof(dir), "%s/xpbridge", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(url, sizeof(url), "ipc://%s/requests", dir);
    nng_socket rep;
    assert_int_equal(nng_rep0_open(&rep), 0);
    assert_int_equal(nng_socket_set_ms(rep, NNG_OPT_RECVTIMEO, WAIT_MS), 0);
    assert_int_equal(nng_listen(rep, url, NULL, 0), 0);
    snprintf(xdg, sizeof(xdg), "XDG_RUNTIME_DIR=%s", f->dir);
    char *envp[64];
    size_t n = 0;
    for (char **e = environ; *e && n < 62; e++)
        if (strncmp(*e, "XDG_RUNTIME_DIR=", 16) != 0) envp[n++] = *e;
    envp[n++] = xdg;
    envp[n] = NULL;
    const char *args[] = {"status", "--timeout", "300", NULL};
    spawn_ctl(f, &r, args, false, envp);
    nng_msg *m = NULL;
    assert_int_equal(nng_recvmsg(rep, &m, 0), 0); /* it came here */
    nng_msg_free(m);
    finish_ctl(&r);
    assert_int_equal(r.status, 3);
    assert_contains(r.err, url);
    nng_close(rep);
    run_free(&r);
}

/* ---- iq -------------------------------------------------------------------- */
static void test_iq_ping(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__Stanza result = XPB__V1__STANZA__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    result.has_kind = result.has_type = 1;
    result.kind = XPB__V1__KIND__KIND_IQ;
    result.type = XPB__V1__STANZA_TYPE__TYPE_RESULT;
    result.from = "example.com";
    result.id = "q1";
    resp.result_case = XPB__V1__RESPONSE__RESULT_IQ_RESULT;
    resp.iq_result = &result;
    const char *args[] = {"iq",     "--account",    "a@x",  "--to", "example.com",
                          "--ping", "--iq-timeout", "2000", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_IQ);
    assert_true(req->iq->has_timeout_ms);
    assert_int_equal(req->iq->timeout_ms, 2000);
    const Xpb__V1__Stanza *st = req->iq->stanza;
    assert_int_equal(st->kind, XPB__V1__KIND__KIND_IQ);
    assert_int_equal(st->type, XPB__V1__STANZA_TYPE__TYPE_GET);
    assert_string_equal(st->to, "example.com");
    assert_true(st->has_ping && st->ping);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "<iq", 3) == 0);
    assert_contains(r.out, "result");
    assert_contains(r.out, "example.com");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_iq_error_response(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__Text text = XPB__V1__TEXT__INIT;
    Xpb__V1__StanzaError err = XPB__V1__STANZA_ERROR__INIT;
    Xpb__V1__Stanza result = XPB__V1__STANZA__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    text.text = "nope";
    err.has_type = err.has_condition = 1;
    err.type = XPB__V1__ERROR_TYPE__ERROR_TYPE_CANCEL;
    err.condition = XPB__V1__ERROR_CONDITION__CONDITION_ITEM_NOT_FOUND;
    err.text = &text;
    result.has_kind = result.has_type = 1;
    result.kind = XPB__V1__KIND__KIND_IQ;
    result.type = XPB__V1__STANZA_TYPE__TYPE_ERROR;
    result.from = "example.com";
    result.error = &err;
    resp.result_case = XPB__V1__RESPONSE__RESULT_IQ_RESULT;
    resp.iq_result = &result;
    const char *args[] = {"iq",           "--account", "a@x", "--to", "example.com",
                          "--disco-info", "--node",    "n1",  NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_non_null(req->iq->stanza->disco_info);
    assert_string_equal(req->iq->stanza->disco_info->node, "n1");
    assert_false(req->iq->has_timeout_ms);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.out, "<iq", 3) == 0);
    assert_string_equal(r.err, "xpbctl: iq: error response: item-not-found: nope\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

/* ---- a minimal JSON syntax check (RFC 8259) for --json lines --------------------- */
static const char *json_value(const char *p);
static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}
static const char *json_string(const char *p)
{
    if (*p++ != '"') return NULL;
    for (; *p && *p != '"'; p++) {
        if ((unsigned char)*p < 0x20) return NULL;
        if (*p == '\\' && !*++p) return NULL;
    }
    return *p == '"' ? p + 1 : NULL;
}
static const char *json_list(const char *p, char close, bool members)
{
    p = json_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
        if (members) {
            p = json_string(json_ws(p));
            if (!p || *(p = json_ws(p)) != ':') return NULL;
            p++;
        }
        if (!(p = json_value(p))) return NULL;
        p = json_ws(p);
        if (*p == close) return p + 1;
        if (*p++ != ',') return NULL;
    }
}
static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{') return json_list(p, '}', true);
    if (*p == '[') return json_list(p, ']', false);
    if (*p == '"') return json_string(p);
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0) return p + 4;
    if (strncmp(p, "false", 5) == 0) return p + 5;
    const char *s = p;
    while (*p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E' ||
           (*p >= '0' && *p <= '9'))
        p++;
    return p > s ? p : NULL;
}
static void assert_json_line(const char *line, size_t len)
{
    char buf[4096];
    assert_true(len < sizeof(buf));
    memcpy(buf, line, len);
    buf[len] = '\0';
    const char *end = buf[0] == '{' ? json_value(buf) : NULL;
    if (!end || *json_ws(end)) fail_msg("not one JSON object: %s", buf);
}
/* Every line of out is a JSON object; returns the number of lines. */
static size_t assert_json_lines(const char *out)
{
    size_t n = 0;
    for (const char *p = out; *p; n++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_json_line(p, (size_t)(nl - p));
        p = nl + 1;
    }
    return n;
}

static void test_iq_version_json(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__Stanza result = XPB__V1__STANZA__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    result.has_kind = result.has_type = 1;
    result.kind = XPB__V1__KIND__KIND_IQ;
    result.type = XPB__V1__STANZA_TYPE__TYPE_RESULT;
    result.id = "v1";
    resp.result_case = XPB__V1__RESPONSE__RESULT_IQ_RESULT;
    resp.iq_result = &result;
    const char *args[] = {"iq", "--account", "a@x", "--to", "b@x/r", "--version", "--json", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    const Xpb__V1__Stanza *st = req->iq->stanza;
    assert_int_equal(st->n_extension, 1);
    assert_string_equal(st->extension[0]->name, "query");
    assert_int_equal(r.status, 0);
    assert_int_equal(assert_json_lines(r.out), 1);
    assert_contains(r.out, "\"kind\":\"KIND_IQ\"");
    assert_contains(r.out, "\"id\":\"v1\"");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

/* ---- presence, roster, join, sessions, status, open, close ---------------------- */
static void test_presence(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    const char *args[] = {"presence", "--account", "a@x",        "--show", "dnd",
                          "--status", "busy",      "--priority", "-5",     NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_PRESENCE);
    assert_string_equal(req->account, "a@x");
    assert_int_equal(req->presence->show, XPB__V1__SHOW__SHOW_DND);
    assert_string_equal(req->presence->status, "busy");
    assert_true(req->presence->has_priority);
    assert_int_equal(req->presence->priority, -5);
    assert_false(req->presence->has_type);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "ok\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);

    const char *args2[] = {"presence", "--account", "a@x",        "--to",
                           "c@x",      "--type",    "subscribed", NULL};
    req = call_ctl(f, &r, args2, &resp);
    assert_string_equal(req->presence->to, "c@x");
    assert_int_equal(req->presence->type, XPB__V1__STANZA_TYPE__TYPE_SUBSCRIBED);
    assert_int_equal(r.status, 0);
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_roster(void **state)
{
    fake *f = *state;
    run r;
    char *groups[] = {"Friends", "Work"};
    Xpb__V1__RosterItem a = XPB__V1__ROSTER_ITEM__INIT, b = XPB__V1__ROSTER_ITEM__INIT;
    a.jid = "alice@x";
    a.name = "Alice";
    a.has_subscription = 1;
    a.subscription = XPB__V1__ROSTER_ITEM__SUBSCRIPTION__SUBSCRIPTION_BOTH;
    a.n_group = 2;
    a.group = groups;
    b.jid = "bob@x";
    b.has_ask_subscribe = b.ask_subscribe = 1;
    Xpb__V1__RosterItem *items[] = {&a, &b};
    Xpb__V1__RosterQuery q = XPB__V1__ROSTER_QUERY__INIT;
    q.n_item = 2;
    q.item = items;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_ROSTER;
    resp.roster = &q;
    const char *args[] = {"roster", "--account", "a@x", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_ROSTER);
    assert_string_equal(req->account, "a@x");
    assert_int_equal(r.status, 0);
    const char *l1 = strchr(r.out, '\n');
    assert_non_null(l1);
    assert_contains(l1, "alice@x");
    assert_contains(l1, "Alice");
    assert_contains(l1, " both ");
    assert_contains(l1, "Friends,Work\n");
    assert_contains(l1, "bob@x");
    assert_contains(l1, "none+ask");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_join(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    const char *args[] = {"join", "--account",  "a@x", "--room",    "ops@conf.x", "--nick",
                          "bot",  "--password", "pw",  "--history", "0",          NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_JOIN);
    assert_string_equal(req->join->room, "ops@conf.x");
    assert_string_equal(req->join->nick, "bot");
    assert_string_equal(req->join->password, "pw");
    assert_true(req->join->has_history_maxstanzas);
    assert_int_equal(req->join->history_maxstanzas, 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "ok\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_sessions(void **state)
{
    fake *f = *state;
    run r;
    char *rooms[] = {"ops@conf.x"};
    Xpb__V1__SessionInfo s = XPB__V1__SESSION_INFO__INIT;
    s.account = "a@x";
    s.jid = "a@x/bridge";
    s.has_state = s.has_stanzas_in = s.has_stanzas_out = s.has_unacked = s.has_reconnects = 1;
    s.state = XPB__V1__SESSION_STATE__STATE__STATE_ONLINE;
    s.stanzas_in = 12;
    s.stanzas_out = 34;
    s.unacked = 2;
    s.reconnects = 5;
    s.n_room = 1;
    s.room = rooms;
    Xpb__V1__SessionInfo *ss[] = {&s};
    Xpb__V1__SessionList l = XPB__V1__SESSION_LIST__INIT;
    l.n_session = 1;
    l.session = ss;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SESSIONS;
    resp.sessions = &l;
    const char *args[] = {"sessions", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_LIST);
    assert_null(req->account);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "ACCOUNT");
    const char *row = strchr(r.out, '\n') + 1;
    assert_true(strncmp(row, "a@x ", 4) == 0);
    assert_contains(row, "a@x/bridge");
    assert_contains(row, " online ");
    assert_contains(row, " 12 ");
    assert_contains(row, " 34 ");
    assert_contains(row, " ops@conf.x\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_status(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__BridgeStatus s = XPB__V1__BRIDGE_STATUS__INIT;
    s.version = "0.1.0";
    s.has_uptime_s = s.has_sessions = s.has_sessions_online = s.has_last_seq = 1;
    s.uptime_s = 42;
    s.sessions = 2;
    s.sessions_online = 1;
    s.last_seq = 99;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_STATUS;
    resp.status = &s;
    const char *args[] = {"status", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_STATUS);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "version: 0.1.0\n");
    assert_contains(r.out, "uptime: 42 s\n");
    assert_contains(r.out, "sessions: 2 (1 online)\n");
    assert_contains(r.out, "last seq: 99\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);

    const char *args2[] = {"status", "--json", NULL};
    req = call_ctl(f, &r, args2, &resp);
    assert_int_equal(assert_json_lines(r.out), 1);
    assert_contains(r.out, "\"last_seq\":\"99\"");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_open_close(void **state)
{
    fake *f = *state;
    run r;
    char pass[128], *abs = NULL;
    snprintf(pass, sizeof(pass), "%s/pass", f->dir);
    FILE *fp = fopen(pass, "w");
    assert_non_null(fp);
    fputs("secret\n", fp);
    fclose(fp);
    abs = realpath(pass, NULL);
    assert_non_null(abs);
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    const char *args[] = {
        "open",   "--account", "a@x",         "--password-file", pass,       "--host", "127.0.0.1",
        "--port", "5223",      "--transport", "directtls",       "--roster", NULL};
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_OPEN);
    assert_string_equal(req->account, "a@x");
    assert_string_equal(req->open->jid, "a@x");
    assert_string_equal(req->open->password_file, abs);
    assert_null(req->open->password);
    assert_string_equal(req->open->host, "127.0.0.1");
    assert_int_equal(req->open->port, 5223);
    assert_int_equal(req->open->transport, XPB__V1__TRANSPORT__TRANSPORT_DIRECT_TLS);
    assert_true(req->open->has_fetch_roster && req->open->fetch_roster);
    assert_int_equal(r.status, 0);
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
    free(abs);

    resp.has_code = 1;
    resp.code = XPB__V1__ERROR_CODE__ERR_UNKNOWN_ACCOUNT;
    resp.error_text = "not open";
    const char *args2[] = {"close", "--account", "z@x", NULL};
    req = call_ctl(f, &r, args2, &resp);
    assert_int_equal(req->op_case, XPB__V1__REQUEST__OP_CLOSE);
    assert_string_equal(req->account, "z@x");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "xpbctl: close: ERR_UNKNOWN_ACCOUNT: not open\n");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

/* ---- usage and help ------------------------------------------------------------ */
static void test_usage_errors(void **state)
{
    fake *f = *state;
    static const struct {
        const char *args[8];
        int status;
    } rows[] = {
        {{"send", "--account", "a@x", "hi", NULL}, 2},          /* no --to */
        {{"send", "--account", "a@x", "--to", "b@x", NULL}, 2}, /* no body */
        {{"send", "--account", "a@x", "--to", "b@x", "--type", "x", NULL}, 2},
        {{"send", "--account", "a@x", "--xml", "<message", NULL}, 1}, /* refused stanza */
        {{"iq", "--account", "a@x", "--to", "b@x", NULL}, 2},         /* no payload */
        {{"iq", "--account", "a@x", "--to", "b@x", "--ping", "--version", NULL}, 2},
        {{"presence", "--account", "a@x", "--type", "subscribed", NULL}, 2},
        {{"presence", "--account", "a@x", "--priority", "200", NULL}, 2},
        {{"join", "--account", "a@x", "--room", "r@c", NULL}, 2},
        {{"tail", "--kind", "message,bogus", NULL}, 2},
        {{"status", "--timeout", "0", NULL}, 2},
        {{"status", "--request-id", "has space", NULL}, 2},
        {{"roster", NULL}, 2},
        {{"frobnicate", NULL}, 2},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        run r;
        spawn_ctl(f, &r, rows[i].args, false, NULL);
        finish_ctl(&r);
        if (r.status != rows[i].status)
            fail_msg("row %zu (%s %s): exit %d, want %d; stderr: %s", i, rows[i].args[0],
                     rows[i].args[1] ? rows[i].args[1] : "", r.status, rows[i].status, r.err);
        assert_true(r.err[0] != '\0');
        run_free(&r);
    }
}

static void test_help_pages(void **state)
{
    fake *f = *state;
    const char *cmds[] = {"send",     "tail",   "iq",   "presence", "roster", "join",
                          "sessions", "status", "open", "close",    "convert"};
    const char *sections[] = {"NAME\n",    "SYNOPSIS\n",    "DESCRIPTION\n",
                              "OPTIONS\n", "EXIT STATUS\n", "EXAMPLES\n"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        run r;
        const char *args[] = {cmds[i], "--help", NULL};
        spawn_ctl(f, &r, args, false, NULL);
        finish_ctl(&r);
        assert_int_equal(r.status, 0);
        for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++)
            assert_contains(r.out, sections[s]);
        assert_contains(r.out, cmds[i]);
        run_free(&r);
    }
}

/* ---- the fake bridge's event side -------------------------------------------------- */
static void wait_subscriber(fake *f)
{
    for (int waited = 0; atomic_load(&f->subscribers) == 0; waited += 10) {
        if (waited > WAIT_MS) fail_msg("xpbctl tail never connected");
        sleep_ms(10);
    }
    sleep_ms(50); /* let the subscriber's side of the pipe start too */
}

/* One NNG message: topic, NUL, EventBatch of n events; prev_seq when has_prev. */
static void publish_prev(fake *f, const char *topic, Xpb__V1__Event **evs, size_t n, bool has_prev,
                         uint64_t prev)
{
    Xpb__V1__EventBatch b = XPB__V1__EVENT_BATCH__INIT;
    b.has_prev_seq = has_prev;
    b.prev_seq = prev;
    b.n_event = n;
    b.event = evs;
    size_t tl = strlen(topic), len = xpb__v1__event_batch__get_packed_size(&b);
    uint8_t *buf = malloc(tl + 1 + len);
    assert_non_null(buf);
    memcpy(buf, topic, tl + 1);
    xpb__v1__event_batch__pack(&b, buf + tl + 1);
    assert_int_equal(nng_send(f->pub, buf, tl + 1 + len, 0), 0);
    free(buf);
}

static void publish(fake *f, const char *topic, Xpb__V1__Event **evs, size_t n)
{
    publish_prev(f, topic, evs, n, false, 0);
}

typedef struct msg_event {
    Xpb__V1__Event ev;
    Xpb__V1__Stanza st;
    Xpb__V1__Text body;
    Xpb__V1__Text *bodies[1];
} msg_event;

static void make_message(msg_event *m, uint64_t seq, const char *account, const char *text)
{
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    Xpb__V1__Text body = XPB__V1__TEXT__INIT;
    m->ev = ev;
    m->st = st;
    m->body = body;
    m->body.text = (char *)text;
    m->bodies[0] = &m->body;
    m->st.has_kind = m->st.has_type = 1;
    m->st.kind = XPB__V1__KIND__KIND_MESSAGE;
    m->st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    m->st.from = "p@x/phone";
    m->st.to = (char *)account;
    m->st.n_body = 1;
    m->st.body = m->bodies;
    m->ev.has_seq = m->ev.has_timestamp_us = 1;
    m->ev.seq = seq;
    m->ev.timestamp_us = 1700000000123456ull;
    m->ev.account = (char *)account;
    m->ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    m->ev.stanza = &m->st;
}

static void publish_message(fake *f, uint64_t seq, const char *kind, const char *account,
                            const char *text)
{
    char topic[128];
    msg_event m;
    make_message(&m, seq, account, text);
    Xpb__V1__Event *evs[] = {&m.ev};
    snprintf(topic, sizeof(topic), "%s/%s/", kind, account);
    publish(f, topic, evs, 1);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* tail --account a@x --kind message prints only a@x's messages: not b@x's,
 * not a@x's presence or state, not a@xy's (the topic ends with '/'). */
static void test_tail_filter(void **state)
{
    fake *f = *state;
    run r;
    const char *args[] = {"tail", "--account", "a@x", "--kind", "message", "--count", "2", NULL};
    spawn_ctl(f, &r, args, true, NULL);
    wait_subscriber(f);
    publish_message(f, 1, "message", "b@x", "B1");
    publish_message(f, 2, "presence", "a@x", "P1");
    publish_message(f, 3, "message", "a@xy", "XY");
    publish_message(f, 4, "message", "a@x", "A1");
    publish_message(f, 5, "state", "a@x", "S1");
    publish_message(f, 6, "message", "a@x", "A2");
    finish_ctl(&r);
    assert_int_equal(r.status, 0);
    assert_int_equal(count_lines(r.out), 2);
    assert_true(strncmp(r.out, "#4 ", 3) == 0);
    assert_contains(r.out, " a@x message p@x/phone → a@x chat \"A1\"\n#6 ");
    assert_contains(r.out, "\"A2\"\n");
    assert_string_equal(r.err, ""); /* filtered: no gap warnings */
    run_free(&r);
}

/* Unfiltered, a skipped seq is reported; a batch of several events works. */
/* Batches are per topic, so an event can arrive after a later seq (a batch of
 * another topic); it is lost only once a batch starting above it arrives. */
static void test_tail_gap(void **state)
{
    fake *f = *state;
    run r;
    const char *args[] = {"tail", "--count", "5", NULL};
    spawn_ctl(f, &r, args, true, NULL);
    wait_subscriber(f);
    msg_event m[5];
    make_message(&m[0], 1, "a@x", "one");
    make_message(&m[1], 2, "a@x", "two");
    make_message(&m[2], 4, "a@x", "four");
    make_message(&m[3], 3, "b@x", "three");
    make_message(&m[4], 6, "a@x", "six");
    Xpb__V1__Event *evs[] = {&m[0].ev, &m[1].ev, &m[2].ev};
    publish(f, "message/a@x/", evs, 3);
    Xpb__V1__Event *late[] = {&m[3].ev};
    publish(f, "message/b@x/", late, 1); /* seq 3 arrives late: not lost */
    Xpb__V1__Event *next[] = {&m[4].ev};
    publish(f, "message/a@x/", next, 1); /* starts at 6: seq 5 is lost */
    finish_ctl(&r);
    assert_int_equal(r.status, 0);
    assert_int_equal(count_lines(r.out), 5);
    assert_contains(r.out, "\"four\"");
    assert_contains(r.out, "\"three\"");
    assert_string_equal(r.err, "xpbctl: tail: lost 1 event (seq 5..5)\n");
    run_free(&r);
}

/* Filtered, gaps come from prev_seq per topic: tail --account a@x sees
 * message/a@x/ and presence/a@x/ interleaved (each chain intact), then a
 * last message batch whose prev_seq is either the message seen last (no
 * warning) or a seq it never got (a warning naming the topic). */
static void test_tail_filtered_prev_seq(void **state)
{
    static const struct {
        uint64_t prev; /* prev_seq of the last batch (seq 7) */
        bool json;
        const char *err, *out_gap;
    } cases[] = {
        {3, false, "", NULL},
        {0, false, "", NULL}, /* unknown: not checked */
        {6, false,
         "xpbctl: tail: lost events on message/a@x/ between seq 3 and 7 (the last was 6)\n", NULL},
        {5, true, "",
         "\n{\"gap\":{\"topic\":\"message/a@x/\",\"after\":3,\"before\":7,\"last\":5}}\n"},
    };
    fake *f = *state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run r;
        const char *args[] = {"tail", "--account", "a@x", "--count", "5", NULL, NULL};
        if (cases[i].json) args[5] = "--json";
        atomic_store(&f->subscribers, 0);
        spawn_ctl(f, &r, args, true, NULL);
        wait_subscriber(f);
        msg_event m[6];
        make_message(&m[0], 1, "a@x", "m1");
        make_message(&m[1], 2, "a@x", "p2");
        make_message(&m[2], 3, "a@x", "m3");
        make_message(&m[3], 4, "b@x", "b4"); /* not subscribed */
        make_message(&m[4], 5, "a@x", "p5");
        make_message(&m[5], 7, "a@x", "m7");
        Xpb__V1__Event *e[6];
        for (size_t k = 0; k < 6; k++)
            e[k] = &m[k].ev;
        publish_prev(f, "message/a@x/", &e[0], 1, true, 0);
        publish_prev(f, "presence/a@x/", &e[1], 1, true, 0);
        publish_prev(f, "message/a@x/", &e[2], 1, true, 1);
        publish_prev(f, "message/b@x/", &e[3], 1, true, 0);
        publish_prev(f, "presence/a@x/", &e[4], 1, true, 2);
        publish_prev(f, "message/a@x/", &e[5], 1, true, cases[i].prev);
        finish_ctl(&r);
        assert_int_equal(r.status, 0);
        assert_int_equal(count_lines(r.out), cases[i].out_gap ? 6 : 5);
        assert_string_equal(r.err, cases[i].err);
        if (cases[i].out_gap) {
            assert_int_equal(assert_json_lines(r.out), 6);
            assert_contains(r.out, cases[i].out_gap);
        } else {
            assert_null(strstr(r.out, "gap"));
        }
        run_free(&r);
    }
}

static void test_tail_json_and_sizes(void **state)
{
    fake *f = *state;
    run r;
    const char *args[] = {"tail", "--json", "--count", "2", NULL};
    spawn_ctl(f, &r, args, true, NULL);
    wait_subscriber(f);
    msg_event m;
    make_message(&m, 5, "a@x", "hello \"json\"\n");
    Xpb__V1__Event *evs[] = {&m.ev};
    publish(f, "message/a@x/", evs, 1);
    Xpb__V1__SessionState ss = XPB__V1__SESSION_STATE__INIT;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ss.has_state = 1;
    ss.state = XPB__V1__SESSION_STATE__STATE__STATE_ONLINE;
    ss.jid = "a@x/bridge";
    ev.has_seq = 1;
    ev.seq = 7;
    ev.account = "a@x";
    ev.body_case = XPB__V1__EVENT__BODY_STATE;
    ev.state = &ss;
    Xpb__V1__Event *evs2[] = {&ev};
    publish(f, "state/a@x/", evs2, 1);
    finish_ctl(&r);
    assert_int_equal(r.status, 0);
    assert_int_equal(assert_json_lines(r.out), 3); /* event, gap, event */
    assert_contains(r.out, "\"seq\":\"5\"");
    assert_contains(r.out, "\"account\":\"a@x\"");
    assert_contains(r.out, "\n{\"gap\":{\"lost\":1,\"first\":6,\"last\":6}}\n");
    assert_contains(r.out, "\"state\":\"STATE_ONLINE\"");
    run_free(&r);

    /* --sizes: the record's size against xml_bytes */
    const char *args2[] = {"tail", "--sizes", "--count", "1", NULL};
    atomic_store(&f->subscribers, 0);
    spawn_ctl(f, &r, args2, true, NULL);
    wait_subscriber(f);
    make_message(&m, 8, "a@x", "sized");
    m.ev.has_xml_bytes = 1;
    m.ev.xml_bytes = 287;
    publish(f, "message/a@x/", evs, 1);
    finish_ctl(&r);
    char want[96];
    size_t rec = xpb__v1__stanza__get_packed_size(&m.st);
    snprintf(want, sizeof(want), " [record %zu B vs XML 287 B (%.2f)]\n", rec, (double)rec / 287.0);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, want);
    run_free(&r);
}

/* ---- options before the command, generated help, limits ------------------------ */
/* `xpbctl --requests URL --timeout MS send ...`: the global options before
 * the command reach it; given again after it, the later one wins. */
static void test_options_before_command(void **state)
{
    fake *f = *state;
    run r;
    Xpb__V1__SendResult sent = XPB__V1__SEND_RESULT__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    sent.stanza_id = "m9";
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp.sent = &sent;
    const char *args[] = {"--requests", f->req_url, "--timeout", "5000", "--request-id",
                          "early-1",    "send",     "--account", "a@x",  "--to",
                          "b@x",        "hi",       "there",     NULL};
    spawn_ctl(f, &r, args, false, NULL);
    Xpb__V1__Request *req = serve_one(f, &resp);
    finish_ctl(&r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "m9\n");
    assert_string_equal(req->request_id, "early-1");
    assert_string_equal(req->send->stanza->body[0]->text, "hi there");
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);

    /* --timeout before the command, overridden after it: 300 ms is used. */
    char want[256];
    const char *args2[] = {"--timeout", "9000",      "--requests", f->req_url,
                           "status",    "--timeout", "300",        NULL};
    spawn_ctl(f, &r, args2, false, NULL);
    req = serve_one(f, NULL);
    finish_ctl(&r);
    assert_int_equal(r.status, 3);
    snprintf(want, sizeof(want),
             "xpbctl: status: no reply from %s within 300 ms — is xpbridge running?\n", f->req_url);
    assert_string_equal(r.err, want);
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);
}

static void test_events_before_tail(void **state)
{
    fake *f = *state;
    run r;
    const char *args[] = {"--events", f->ev_url, "--json", "tail", "--count", "1", NULL};
    spawn_ctl(f, &r, args, false, NULL);
    wait_subscriber(f);
    publish_message(f, 1, "message", "a@x", "early");
    finish_ctl(&r);
    assert_int_equal(r.status, 0);
    assert_int_equal(assert_json_lines(r.out), 1);
    assert_contains(r.out, "\"early\"");
    run_free(&r);
}

/* Every option of every command, as the commands took them before their
 * tables existed: each must be in its command's generated --help. */
static const struct {
    const char *cmd;
    const char *opts[12];
} command_opts[] = {
    {"convert", {"--from", "--to", "--max-stanza-bytes", "FILE", NULL}},
    {"send", {"--account", "--to", "--type", "--thread", "--id", "--xml", "--batch", "BODY...", NULL}},
    {"tail", {"--account", "--kind", "--count", "--sizes", NULL}},
    {"iq",
     {"--account", "--to", "--ping", "--disco-info", "--disco-items", "--node", "--version",
      "--xml", "--iq-timeout", NULL}},
    {"presence",
     {"--account", "--show", "--status", "--priority", "--unavailable", "--to", "--type", NULL}},
    {"roster", {"--account", NULL}},
    {"join", {"--account", "--room", "--nick", "--password", "--history", NULL}},
    {"sessions", {NULL}},
    {"status", {NULL}},
    {"open",
     {"--account", "--password-file", "--host", "--port", "--transport", "--ws-url", "--ca-file",
      "--roster", "--no-presence", "--no-sm", NULL}},
    {"close", {"--account", NULL}},
};
static const char *const global_opts[] = {"--requests",   "--events", "--timeout",
                                          "--request-id", "--json",   NULL};

/* "    NAME" at the start of a line of the help's option list. */
static void assert_lists_option(const char *help, const char *cmd, const char *opt)
{
    char want[64];
    snprintf(want, sizeof(want), "\n    %s ", opt);
    if (!strstr(help, want)) fail_msg("xpbctl %s --help does not list %s:\n%s", cmd, opt, help);
}

static void test_help_lists_every_option(void **state)
{
    fake *f = *state;
    for (size_t i = 0; i < sizeof(command_opts) / sizeof(command_opts[0]); i++) {
        run r, h;
        const char *args[] = {command_opts[i].cmd, "--help", NULL};
        spawn_ctl(f, &r, args, false, NULL);
        finish_ctl(&r);
        assert_int_equal(r.status, 0);
        for (size_t o = 0; command_opts[i].opts[o]; o++)
            assert_lists_option(r.out, command_opts[i].cmd, command_opts[i].opts[o]);
        for (size_t o = 0; strcmp(command_opts[i].cmd, "convert") != 0 && global_opts[o]; o++)
            assert_lists_option(r.out, command_opts[i].cmd, global_opts[o]);
        assert_lists_option(r.out, command_opts[i].cmd, "--help");
        /* `xpbctl help CMD` is the same page */
        const char *hargs[] = {"help", command_opts[i].cmd, NULL};
        spawn_ctl(f, &h, hargs, false, NULL);
        finish_ctl(&h);
        assert_int_equal(h.status, 0);
        assert_string_equal(h.out, r.out);
        run_free(&r);
        run_free(&h);
    }
}

/* xpbctl --help lists every command with its summary, and the global options. */
static void test_main_help(void **state)
{
    fake *f = *state;
    run r;
    const char *args[] = {"--help", NULL};
    spawn_ctl(f, &r, args, false, NULL);
    finish_ctl(&r);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "\nCOMMANDS\n");
    assert_contains(r.out, "\nGLOBAL OPTIONS\n");
    for (size_t i = 0; i < sizeof(command_opts) / sizeof(command_opts[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "\n    %-9s ", command_opts[i].cmd);
        assert_contains(r.out, want);
    }
    for (size_t o = 0; global_opts[o]; o++)
        assert_lists_option(r.out, "", global_opts[o]);
    run_free(&r);
}

/* Limits are in the help, generated from the option tables. */
static void test_help_states_limits(void **state)
{
    fake *f = *state;
    static const struct {
        const char *cmd, *limit;
    } rows[] = {
        {"send", "at most 256 words"},
        {"send", "one of chat, normal, groupchat, headline"},
        {"send", "1..86400000 ms"},
        {"send", "1..128 bytes"},
        {"tail", "repeatable, at most 16 times"},
        {"iq", "1..86400000 ms"},
        {"presence", "-128..127"},
        {"join", "0..2147483647"},
        {"open", "1..65535"},
        {"open", "one of starttls, directtls, websocket"},
        {"convert", "10000..1073741824"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        run r;
        const char *args[] = {rows[i].cmd, "--help", NULL};
        spawn_ctl(f, &r, args, false, NULL);
        finish_ctl(&r);
        assert_int_equal(r.status, 0);
        if (!strstr(r.out, rows[i].limit))
            fail_msg("xpbctl %s --help does not state '%s'", rows[i].cmd, rows[i].limit);
        run_free(&r);
    }
}

/* An unknown option names the command (and where its help is); one before
 * the command names neither. */
static void test_unknown_option_names_command(void **state)
{
    fake *f = *state;
    static const struct {
        const char *args[6];
        const char *err;
    } rows[] = {
        {{"send", "--account", "a@x", "--bogus", NULL},
         "xpbctl send: unknown option: --bogus\nusage: xpbctl send "},
        {{"tail", "--bogus", NULL}, "xpbctl tail: unknown option: --bogus\nusage: xpbctl tail "},
        {{"convert", "--json", NULL}, "xpbctl convert: unknown option: --json\n"},
        {{"--to", "b@x", "send", NULL},
         "xpbctl: unknown global option (a command's options go after its name): --to\n"},
        {{"--timeout", "5", "convert", "--from", "xml", NULL},
         "xpbctl convert: the global options do not apply to this command: --timeout\n"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        run r;
        spawn_ctl(f, &r, rows[i].args, false, NULL);
        finish_ctl(&r);
        assert_int_equal(r.status, 2);
        assert_string_equal(r.out, "");
        if (strncmp(r.err, rows[i].err, strlen(rows[i].err)) != 0)
            fail_msg("row %zu: stderr\n%s\ndoes not start with\n%s", i, r.err, rows[i].err);
        run_free(&r);
    }
}

/* send takes at most 256 BODY words: 256 are sent, 257 are refused before
 * anything goes on the bus. */
static void test_send_word_limit(void **state)
{
    fake *f = *state;
    enum { LIMIT = 256 };
    static char words[LIMIT + 1][8];
    const char *args[LIMIT + 8];
    size_t n = 0;
    args[n++] = "send";
    args[n++] = "--account";
    args[n++] = "a@x";
    args[n++] = "--to";
    args[n++] = "b@x";
    for (size_t i = 0; i < LIMIT; i++) {
        snprintf(words[i], sizeof(words[i]), "w%zu", i);
        args[n++] = words[i];
    }
    args[n] = NULL;

    run r;
    Xpb__V1__SendResult sent = XPB__V1__SEND_RESULT__INIT;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    sent.stanza_id = "long";
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp.sent = &sent;
    Xpb__V1__Request *req = call_ctl(f, &r, args, &resp);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(req->send->stanza->body[0]->text, "w0 w1 w2 ", 9) == 0);
    assert_non_null(strstr(req->send->stanza->body[0]->text, " w255"));
    xpb__v1__request__free_unpacked(req, NULL);
    run_free(&r);

    snprintf(words[LIMIT], sizeof(words[LIMIT]), "w%d", LIMIT);
    args[n++] = words[LIMIT];
    args[n] = NULL;
    spawn_ctl(f, &r, args, true, NULL);
    finish_ctl(&r);
    assert_int_equal(r.status, 2);
    assert_true(strncmp(r.err,
                        "xpbctl send: too many BODY words (at most 256): quote them to pass one "
                        "argument\n",
                        80) == 0);
    nng_msg *m = NULL;
    assert_int_equal(nng_recvmsg(f->rep, &m, NNG_FLAG_NONBLOCK), NNG_EAGAIN); /* nothing sent */
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_xml_with_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_batch_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_reply_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iq_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iq_error_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iq_version_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_filtered_prev_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_json_and_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options_before_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_before_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_lists_every_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_main_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_states_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_option_names_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_word_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
