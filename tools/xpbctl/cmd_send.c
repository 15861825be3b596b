/* `xpbctl send`: a message built from words, or any stanza given as XML,
 * sent through a bridged account (request "send" of bus.proto). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bus_client.h"
#include "output.h"
#include "stanza_arg.h"
#include "xpb_xml.h"

#define SEND_MAX_WORDS 256 /* positional words of a message body */

typedef struct send_args {
    const char *account, *to, *thread, *id, *xml;
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

static int run_send(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const send_args *a = args;
    ctl c;
    int rc = check_send(cmd, a);
    if (!rc) rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    xpb_arena *arena = xpb_arena_new(0);
    rc = arena ? send_stanza(&c, a, arena) : XPBCTL_EXIT_FAIL;
    xpb_arena_free(arena);
    return rc;
}

const xpbctl_command xpbctl_cmd_send = {
    .page =
        {
            .name = "send",
            .summary = "send a message, or any stanza, through a bridged account",
            .usage = "xpbctl send --account JID (--to JID [--type T] [--thread T] [--id ID] "
                     "BODY... | --xml STANZA)",
            .synopsis =
                "    xpbctl send --account JID --to JID [--type chat|normal|groupchat|headline]\n"
                "                [--thread T] [--id ID] [OPTIONS] [--] BODY...\n"
                "    xpbctl send --account JID --xml STANZA [OPTIONS]\n",
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
                "    --kind delivery).\n",
            .exit_status =
                XPBCTL_REQUEST_EXIT_STATUS "    1  also: the stanza given with --xml was refused\n",
            .examples =
                "    xpbctl send --account bot@example.com --to alice@example.com Hello there\n"
                "    xpbctl send --account bot@example.com --request-id order-42 \\\n"
                "        --to alice@example.com 'Your order shipped'\n"
                "    xpbctl send --account bot@example.com \\\n"
                "        --xml \"<message to='alice@example.com'><body>hi</body></message>\"\n",
        },
    .opts = send_opts,
    .args_size = sizeof(send_args),
    .bus = true,
    .run = run_send,
};
