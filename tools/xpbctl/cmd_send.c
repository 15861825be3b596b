/* `xpbctl send`: a message built from words, or any stanza given as XML,
 * sent through a bridged account (request "send" of bus.proto). */
#define _GNU_SOURCE /* getline */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bus_client.h"
#include "output.h"
#include "stanza_arg.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define SEND_MAX_WORDS 256 /* positional words of a message body */
#define SEND_MAX_BATCH 4096 /* stanzas of --batch: XPB_DAEMON_MAX_SEND_BATCH */
#define SEND_WAIT_DEFAULT_MS 60000L /* --wait without --timeout */

typedef struct send_args {
    const char *account, *to, *thread, *id, *xml, *batch;
    xpbctl_num type, wait;
    xpbctl_list words;
    bool receipt;
} send_args;

/* --wait STATE: the Delivery outcome to wait for (docs/bus.md, "Delivery"). */
static const xpbctl_choice wait_states[] = {
    {"sent", XPB__V1__DELIVERY__OUTCOME__OUTCOME_SENT},
    {"acked", XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED},
    {"received", XPB__V1__DELIVERY__OUTCOME__OUTCOME_RECEIVED},
    {NULL, 0},
};

static const xpbctl_choice message_types[] = {
    {"chat", XPB__V1__STANZA_TYPE__TYPE_CHAT},
    {"normal", XPB__V1__STANZA_TYPE__TYPE_NORMAL},
    {"groupchat", XPB__V1__STANZA_TYPE__TYPE_GROUPCHAT},
    {"headline", XPB__V1__STANZA_TYPE__TYPE_HEADLINE},
    {NULL, 0},
};

static const xpbctl_opt send_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(send_args, account),
     .help = "the bridged account to send from (bare JID)"},
    {.name = "--to",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(send_args, to),
     .help = "the recipient (required without --xml)"},
    {.name = "--type",
     .arg = "T",
     .kind = XPBCTL_CHOICE,
     .choices = message_types,
     .offset = XPBCTL_AT(send_args, type),
     .help = "message type (RFC 6121 §5.2.2; default chat)"},
    {.name = "--thread",
     .arg = "T",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(send_args, thread),
     .help = "thread id (RFC 6121 §5.2.5)"},
    {.name = "--id",
     .arg = "ID",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(send_args, id),
     .help = "the stanza's id attribute"},
    {.name = "--xml",
     .arg = "STANZA",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(send_args, xml),
     .help = "send this stanza instead of building a message"},
    {.name = "--batch",
     .arg = "FILE",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(send_args, batch),
     .help = "send every stanza of FILE (one XML stanza per line, - for\n"
             "standard input; at most 4096) in one send_batch request"},
    {.name = "--receipt",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(send_args, receipt),
     .help = "ask the recipient's client for a receipt (XEP-0184): its\n"
             "<received/> becomes the delivery state RECEIVED"},
    {.name = "--wait",
     .arg = "STATE",
     .kind = XPBCTL_CHOICE,
     .choices = wait_states,
     .offset = XPBCTL_AT(send_args, wait),
     .help = "sent, acked or received: exit 0 once the message reaches\n"
             "that delivery state; 1 when it FAILED; 3 when --timeout\n"
             "(default 60000 ms here) passes first. received implies\n"
             "--receipt"},
    {.arg = "BODY",
     .kind = XPBCTL_WORDS,
     .max = SEND_MAX_WORDS,
     .offset = XPBCTL_AT(send_args, words),
     .help = "the message body: the words joined by single spaces;\n"
             "quote a longer body to pass it as one word"},
    {0},
};

static const char *type_name(const send_args *a)
{
    for (const xpbctl_choice *c = message_types; c->name; c++)
        if (a->type.set && c->value == a->type.v) return c->name;
    return "chat";
}

static int build_body(xpb_writer *w, const send_args *a)
{
    int rc = xpb_writer_start(w, XPB_NS_CLIENT, "body");
    for (size_t i = 0; !rc && i < a->words.n; i++) {
        if (i) rc = xpb_writer_text(w, " ", 1);
        if (!rc) rc = xpb_writer_text(w, a->words.v[i], strlen(a->words.v[i]));
    }
    if (!rc) rc = xpb_writer_end(w);
    return rc;
}

static int build_message_xml(const send_args *a, xpb_buf *out)
{
    xpb_writer w;
    const char *type = type_name(a);
    xpb_writer_init(&w, out, "");
    int rc = xpb_writer_start(&w, XPB_NS_CLIENT, "message");
    if (!rc) rc = xpb_writer_attr(&w, "", "to", a->to, strlen(a->to));
    if (!rc) rc = xpb_writer_attr(&w, "", "type", type, strlen(type));
    if (!rc && a->id) rc = xpb_writer_attr(&w, "", "id", a->id, strlen(a->id));
    if (!rc) rc = build_body(&w, a);
    if (!rc && a->thread) {
        rc = xpb_writer_start(&w, XPB_NS_CLIENT, "thread");
        if (!rc) rc = xpb_writer_text(&w, a->thread, strlen(a->thread));
        if (!rc) rc = xpb_writer_end(&w);
    }
    if (!rc) rc = xpb_writer_end(&w);
    return rc;
}

static int check_send(const xpbctl_command *cmd, const send_args *a)
{
    if (a->batch && (a->xml || a->to || a->type.set || a->thread || a->id || a->words.n))
        return xpbctl_usage_error(
            &cmd->page, "--batch cannot be combined with --xml, --to, --type, --thread, --id or BODY",
            NULL);
    if (a->batch) return 0;
    if (a->xml && (a->to || a->type.set || a->thread || a->id || a->words.n))
        return xpbctl_usage_error(
            &cmd->page, "--xml cannot be combined with --to, --type, --thread, --id or BODY", NULL);
    if (!a->xml && (!a->to || !a->words.n))
        return xpbctl_usage_error(&cmd->page, "--to and a BODY are required", NULL);
    return 0;
}

static int print_sent(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_SENT) return ctl_missing_result(c);
    if (c->json) return ctl_print_json(&resp->sent->base);
    ctl_put_clean(resp->sent->stanza_id ? resp->sent->stanza_id : "-", SIZE_MAX);
    puts(resp->sent->has_queued && resp->sent->queued ? " queued" : "");
    return 0;
}

/* ---- --wait ------------------------------------------------------------------- */

static const char *outcome_name(int o)
{
    switch (o) {
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_QUEUED: return "queued";
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_SENT: return "sent";
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED: return "acked";
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_RECEIVED: return "received";
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_FAILED: return "failed";
    default: return "unknown";
    }
}

/* States in order; a later one implies the earlier (ACKED after SENT). */
static int outcome_rank(int o)
{
    switch (o) {
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_QUEUED: return 1;
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_SENT: return 2;
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED: return 3;
    case XPB__V1__DELIVERY__OUTCOME__OUTCOME_RECEIVED: return 4;
    default: return 0;
    }
}

/* One delivery event message: 1 when the wait is over (*rc set), else 0. */
static int wait_event(ctl *c, const send_args *a, const char *id, const uint8_t *data,
                      size_t len, int *rc)
{
    const uint8_t *nul = memchr(data, 0, len);
    size_t off = nul ? (size_t)(nul - data) + 1 : 0;
    Xpb__V1__EventBatch *b = NULL;
    if (!nul ||
        xpb_pb_check_depth(&xpb__v1__event_batch__descriptor, data + off, len - off,
                           XPB_RECORD_DEFAULT_MAX_DEPTH + 2) ||
        !(b = xpb__v1__event_batch__unpack(NULL, len - off, data + off)))
        return 0;
    int done = 0;
    for (size_t i = 0; i < b->n_event && !done; i++) {
        const Xpb__V1__Event *ev = b->event[i];
        if (ev->body_case != XPB__V1__EVENT__BODY_DELIVERY || !ev->delivery->stanza_id ||
            strcmp(ev->delivery->stanza_id, id) != 0)
            continue;
        int o = ev->delivery->outcome;
        if (!c->json) printf("%s %s\n", id, outcome_name(o));
        else ctl_print_json(&ev->base);
        if (o == XPB__V1__DELIVERY__OUTCOME__OUTCOME_FAILED) {
            fprintf(stderr, "xpbctl: send: %s failed: %s\n", id,
                    ev->delivery->reason ? ev->delivery->reason : "(no reason given)");
            *rc = XPBCTL_EXIT_FAIL;
            done = 1;
        } else if (outcome_rank(o) >= outcome_rank((int)a->wait.v)) {
            *rc = 0;
            done = 1;
        }
    }
    fflush(stdout);
    xpb__v1__event_batch__free_unpacked(b, NULL);
    return done;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_delivery(ctl *c, const send_args *a, ctl_sub *sub, const char *id, long until)
{
    int rc = XPBCTL_EXIT_NOREPLY;
    while (now_ms() < until) {
        const uint8_t *data = NULL;
        size_t len = 0;
        int r = ctl_sub_next(sub, &data, &len);
        if (r == CTL_SUB_TIMEOUT) continue;
        if (r) return r;
        if (wait_event(c, a, id, data, len, &rc)) return rc;
    }
    fprintf(stderr, "xpbctl: send: %s did not reach the delivery state %s within %ld ms "
                    "(--timeout)\n",
            id, outcome_name((int)a->wait.v), c->timeout_ms);
    return XPBCTL_EXIT_NOREPLY;
}

/* --wait: the id is made here, so the events can be matched before the reply. */
static void wait_id(const send_args *a, xpb_stanza *st, char *buf, size_t len)
{
    if (st->id) {
        snprintf(buf, len, "%s", st->id);
        return;
    }
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint64_t)time(NULL);
    snprintf(buf, len, "xpbctl-%016llx", (unsigned long long)r);
    (void)a;
}

static int print_sent_quiet(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_SENT) return ctl_missing_result(c);
    return 0;
}

static int send_waiting(ctl *c, const send_args *a, xpb_stanza *st, Xpb__V1__Request *r)
{
    char prefix[1200], id[128];
    if (xpb_bus_topic_prefix("delivery", a->account, prefix, sizeof prefix) < 0) {
        fprintf(stderr, "xpbctl: send: --account is too long for a topic\n");
        return XPBCTL_EXIT_USAGE;
    }
    wait_id(a, st, id, sizeof id);
    st->id = id;
    long total = c->timeout_set ? c->timeout_ms : SEND_WAIT_DEFAULT_MS;
    long until = now_ms() + total;
    const char *prefixes[] = {prefix};
    ctl_sub *sub = NULL;
    /* Subscribe first: the states are published right after the send. */
    int rc = ctl_sub_open(c, prefixes, 1, &sub);
    if (!rc && ctl_sub_wait_connected(sub, total) != 0) {
        fprintf(stderr, "xpbctl: send: cannot subscribe to %s within %ld ms\n", c->events, total);
        rc = XPBCTL_EXIT_NOREPLY;
    }
    if (!rc) rc = ctl_request(c, r, print_sent_quiet);
    c->timeout_ms = total;
    if (!rc) rc = wait_delivery(c, a, sub, id, until);
    ctl_sub_close(sub);
    return rc;
}

static int send_stanza(ctl *c, const send_args *a, xpb_arena *arena)
{
    xpb_buf xml;
    xpb_stanza *st = NULL;
    xpb_buf_init(&xml, 0);
    int rc = 0;
    if (a->xml)
        rc = ctl_stanza_from_text(c->cmd, arena, a->xml, strlen(a->xml), &st);
    else if (build_message_xml(a, &xml))
        rc = XPBCTL_EXIT_FAIL;
    else
        rc = ctl_stanza_from_text(c->cmd, arena, xml.data, xml.len, &st);
    xpb_buf_free(&xml);
    if (rc) return rc;
    Xpb__V1__SendStanza s = XPB__V1__SEND_STANZA__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    s.stanza = st;
    s.has_receipt = s.receipt =
        a->receipt || (a->wait.set && a->wait.v == XPB__V1__DELIVERY__OUTCOME__OUTCOME_RECEIVED);
    r.op_case = XPB__V1__REQUEST__OP_SEND;
    r.send = &s;
    if (a->wait.set) return send_waiting(c, a, st, &r);
    return ctl_request(c, &r, print_sent);
}

/* One line per stanza, in order: "ID[ queued]" or "error ERR_NAME: text";
 * exit 1 when any was refused. */
static int print_sent_batch(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_SENT_BATCH) return ctl_missing_result(c);
    if (c->json) return ctl_print_json(&resp->sent_batch->base);
    int refused = 0;
    for (size_t i = 0; i < resp->sent_batch->n_result; i++) {
        const Xpb__V1__SendOutcome *o = resp->sent_batch->result[i];
        if (!o->has_code || o->code == XPB__V1__ERROR_CODE__OK) {
            ctl_put_clean(o->stanza_id ? o->stanza_id : "-", SIZE_MAX);
            puts(o->has_queued && o->queued ? " queued" : "");
            continue;
        }
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&xpb__v1__error_code__descriptor, (int)o->code);
        printf("error %s: ", v ? v->name : "?");
        ctl_put_clean(o->error_text ? o->error_text : "", SIZE_MAX);
        putchar('\n');
        refused = 1;
    }
    return refused ? XPBCTL_EXIT_FAIL : 0;
}

/* --batch: every non-blank line of the file is one stanza (checked here like
 * --xml), all sent in one send_batch request. */
static int send_batch(ctl *c, const send_args *a, xpb_arena *arena)
{
    FILE *f = strcmp(a->batch, "-") == 0 ? stdin : fopen(a->batch, "r");
    if (!f) {
        fprintf(stderr, "xpbctl: send: --batch %s: cannot be read\n", a->batch);
        return XPBCTL_EXIT_FAIL;
    }
    static Xpb__V1__SendStanza items[SEND_MAX_BATCH];
    static Xpb__V1__SendStanza *ptrs[SEND_MAX_BATCH];
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (strspn(line, " \t") >= (size_t)len) continue; /* blank */
        if (n == SEND_MAX_BATCH) {
            fprintf(stderr, "xpbctl: send: --batch %s holds more than %d stanzas\n", a->batch,
                    SEND_MAX_BATCH);
            rc = XPBCTL_EXIT_FAIL;
            break;
        }
        xpb_stanza *st = NULL;
        rc = ctl_stanza_from_text(c->cmd, arena, line, (size_t)len, &st);
        items[n] = (Xpb__V1__SendStanza)XPB__V1__SEND_STANZA__INIT;
        items[n].stanza = st;
        ptrs[n] = &items[n];
        n++;
    }
    free(line);
    if (f != stdin) fclose(f);
    if (!rc && n == 0) {
        fprintf(stderr, "xpbctl: send: --batch %s holds no stanza\n", a->batch);
        rc = XPBCTL_EXIT_FAIL;
    }
    if (rc) return rc;
    Xpb__V1__SendBatch sb = XPB__V1__SEND_BATCH__INIT;
    sb.n_send = n;
    sb.send = ptrs;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_SEND_BATCH;
    r.send_batch = &sb;
    return ctl_request(c, &r, print_sent_batch);
}

static int run_send(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const send_args *a = args;
    ctl c;
    int rc = check_send(cmd, a);
    if (!rc) rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    xpb_arena *arena = xpb_arena_new(0);
    rc = !arena ? XPBCTL_EXIT_FAIL : a->batch ? send_batch(&c, a, arena) : send_stanza(&c, a, arena);
    xpb_arena_free(arena);
    return rc;
}

const xpbctl_command xpbctl_cmd_send = {
    .page =
        {
            .name = "send",
            .summary = "send a message, or any stanza, through a bridged account",
            .usage = "xpbctl send --account JID (--to JID [--type T] [--thread T] [--id ID] "
                     "BODY... | --xml STANZA | --batch FILE) [--receipt] [--wait sent|acked|received]",
            .synopsis =
                "    xpbctl send --account JID --to JID [--type chat|normal|groupchat|headline]\n"
                "                [--thread T] [--id ID] [--receipt] [--wait STATE] [OPTIONS]\n"
                "                [--] BODY...\n"
                "    xpbctl send --account JID --xml STANZA [--receipt] [--wait STATE] [OPTIONS]\n"
                "    xpbctl send --account JID --batch FILE [OPTIONS]\n",
            .description =
                "    Asks the bridge to send a stanza from the account's session (request\n"
                "    \"send\" of proto/xpb/v1/bus.proto). The first form builds a <message/>\n"
                "    whose body is the BODY words joined by single spaces (at most 256\n"
                "    words: quote a longer body). The second sends the stanza given as XML\n"
                "    (no xmlns means jabber:client); it is mapped to a record and checked\n"
                "    like the bridge checks records before it is sent. The session fills\n"
                "    in 'from'; the bridge assigns an id when none is given.\n"
                "\n"
                "    Prints the id the stanza was sent with, followed by \"queued\" when the\n"
                "    session is not online yet and the stanza waits in its queue. Whether the\n"
                "    server received it is reported later as a delivery event (xpbctl tail\n"
                "    --kind delivery): queued, sent, acked (the server has it), received\n"
                "    (the recipient's client confirmed it; with --receipt), or failed.\n"
                "\n"
                "    With --wait STATE, xpbctl subscribes to delivery/ACCOUNT/ before it\n"
                "    sends, prints \"ID STATE\" for each state the stanza reaches, and exits\n"
                "    once it reaches STATE (or a later one): 0; FAILED: 1 with the reason;\n"
                "    no such state within --timeout (default 60000 ms with --wait): 3. The\n"
                "    id is made by xpbctl when --id is not given.\n"
                "\n"
                "    The third form sends many stanzas in one request (\"send_batch\"): FILE\n"
                "    (- for standard input) holds one XML stanza per line, blank lines\n"
                "    skipped, at most 4096. Each is accepted or refused on its own; one line\n"
                "    per stanza is printed, in order: its id (and \"queued\"), or \"error\n"
                "    ERR_NAME: text\". Delivery events name them REQUEST_ID/INDEX.\n",
            .exit_status =
                XPBCTL_REQUEST_EXIT_STATUS "    1  also: the stanza given with --xml was refused, or\n"
                                           "       --batch: a line was not a stanza, or the bridge\n"
                                           "       refused one of them, or (--wait) the stanza FAILED\n"
                                           "    3  also: (--wait) the state was not reached within\n"
                                           "       --timeout\n",
            .examples =
                "    xpbctl send --account bot@example.com --to alice@example.com Hello there\n"
                "    xpbctl send --account bot@example.com --request-id order-42 \\\n"
                "        --to alice@example.com 'Your order shipped'\n"
                "    xpbctl send --account bot@example.com \\\n"
                "        --xml \"<message to='alice@example.com'><body>hi</body></message>\"\n"
                "    xpbctl send --account bot@example.com --to alice@example.com \\\n"
                "        --wait received --timeout 30000 'Did you get this?'\n"
                "    xpbctl send --account bot@example.com --batch outbox.xml\n",
        },
    .opts = send_opts,
    .args_size = sizeof(send_args),
    .bus = true,
    .run = run_send,
};
