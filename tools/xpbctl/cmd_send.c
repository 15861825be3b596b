/* `xpbctl send`: a message built from words, or any stanza given as XML,
 * sent through a bridged account (request "send" of bus.proto). */
#define _GNU_SOURCE /* getline */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_client.h"
#include "output.h"
#include "stanza_arg.h"
#include "xpb_xml.h"

#define SEND_MAX_WORDS 256 /* positional words of a message body */
#define SEND_MAX_BATCH 4096 /* stanzas of --batch: XPB_DAEMON_MAX_SEND_BATCH */

typedef struct send_args {
    const char *account, *to, *thread, *id, *xml, *batch;
    xpbctl_num type;
    xpbctl_list words;
} send_args;

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
    r.op_case = XPB__V1__REQUEST__OP_SEND;
    r.send = &s;
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
                     "BODY... | --xml STANZA | --batch FILE)",
            .synopsis =
                "    xpbctl send --account JID --to JID [--type chat|normal|groupchat|headline]\n"
                "                [--thread T] [--id ID] [OPTIONS] [--] BODY...\n"
                "    xpbctl send --account JID --xml STANZA [OPTIONS]\n"
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
                "    --kind delivery).\n"
                "\n"
                "    The third form sends many stanzas in one request (\"send_batch\"): FILE\n"
                "    (- for standard input) holds one XML stanza per line, blank lines\n"
                "    skipped, at most 4096. Each is accepted or refused on its own; one line\n"
                "    per stanza is printed, in order: its id (and \"queued\"), or \"error\n"
                "    ERR_NAME: text\". Delivery events name them REQUEST_ID/INDEX.\n",
            .exit_status =
                XPBCTL_REQUEST_EXIT_STATUS
                "    1  also: the stanza given with --xml was refused, or --batch: a line was\n"
                "       not a stanza, or the bridge refused one of them\n",
            .examples =
                "    xpbctl send --account bot@example.com --to alice@example.com Hello there\n"
                "    xpbctl send --account bot@example.com --request-id order-42 \\\n"
                "        --to alice@example.com 'Your order shipped'\n"
                "    xpbctl send --account bot@example.com \\\n"
                "        --xml \"<message to='alice@example.com'><body>hi</body></message>\"\n"
                "    xpbctl send --account bot@example.com --batch outbox.xml\n",
        },
    .opts = send_opts,
    .args_size = sizeof(send_args),
    .bus = true,
    .run = run_send,
};
