/* `xpbctl iq`: an iq get or set through a bridged account, and its response
 * (request "iq" of bus.proto; RFC 6120 §8.2.3). */
#include <stdio.h>
#include <string.h>

#include "bus_client.h"
#include "output.h"
#include "stanza_arg.h"
#include "xpb_error.h"
#include "xpb_xml.h"

#define IQ_DEFAULT_WAIT_MS 10000 /* the bridge's own wait when --iq-timeout is absent */
#define IQ_MARGIN_MS 5000        /* bridge-side iq timeout + this = REQ timeout */

typedef struct iq_args {
    const char *account, *to, *node, *xml;
    bool ping, disco_info, disco_items, version;
    xpbctl_num iq_timeout;
} iq_args;

static const xpbctl_opt iq_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(iq_args, account),
     .help = "the bridged account to send from"},
    {.name = "--to",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(iq_args, to),
     .help = "the entity to ask (required without --xml)"},
    {.name = "--ping",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(iq_args, ping),
     .help = "<ping xmlns='urn:xmpp:ping'/>"},
    {.name = "--disco-info",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(iq_args, disco_info),
     .help = "<query xmlns='http://jabber.org/protocol/disco#info'/>"},
    {.name = "--disco-items",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(iq_args, disco_items),
     .help = "<query xmlns='http://jabber.org/protocol/disco#items'/>"},
    {.name = "--node",
     .arg = "N",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(iq_args, node),
     .help = "the disco node to ask about"},
    {.name = "--version",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(iq_args, version),
     .help = "<query xmlns='jabber:iq:version'/>"},
    {.name = "--xml",
     .arg = "IQ",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(iq_args, xml),
     .help = "send this iq (type get or set)"},
    {.name = "--iq-timeout",
     .arg = "MS",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = CTL_MAX_TIMEOUT_MS,
     .unit = "ms",
     .offset = XPBCTL_AT(iq_args, iq_timeout),
     .help = "how long the bridge waits for the response (default\n"
             "10000); --timeout is raised to this plus 5000 unless\n"
             "given"},
    {0},
};

/* The payload element of --ping etc.; *n counts the payloads asked for. */
static void payload(const iq_args *a, const char **ns, const char **name, int *n)
{
    static const struct {
        size_t flag;
        const char *ns, *name;
    } t[] = {
        {offsetof(iq_args, ping), "urn:xmpp:ping", "ping"},
        {offsetof(iq_args, disco_info), "http://jabber.org/protocol/disco#info", "query"},
        {offsetof(iq_args, disco_items), "http://jabber.org/protocol/disco#items", "query"},
        {offsetof(iq_args, version), "jabber:iq:version", "query"},
    };
    *n = a->xml ? 1 : 0;
    *ns = *name = NULL;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (*(const bool *)((const char *)a + t[i].flag)) {
            *ns = t[i].ns;
            *name = t[i].name;
            (*n)++;
        }
}

static int check_iq(const xpbctl_command *cmd, const iq_args *a)
{
    const char *ns, *name;
    int n;
    payload(a, &ns, &name, &n);
    if (n != 1)
        return xpbctl_usage_error(
            &cmd->page, "give exactly one of --ping, --disco-info, --disco-items, --version, --xml",
            NULL);
    if (!a->xml && !a->to) return xpbctl_usage_error(&cmd->page, "--to is required", NULL);
    if (a->node && !(a->disco_info || a->disco_items))
        return xpbctl_usage_error(&cmd->page, "--node goes with --disco-info or --disco-items",
                                  NULL);
    return 0;
}

static int build_iq_xml(const iq_args *a, xpb_buf *out)
{
    const char *ns, *name;
    int n;
    xpb_writer w;
    payload(a, &ns, &name, &n);
    xpb_writer_init(&w, out, "");
    int rc = xpb_writer_start(&w, XPB_NS_CLIENT, "iq");
    if (!rc) rc = xpb_writer_attr(&w, "", "type", "get", 3);
    if (!rc) rc = xpb_writer_attr(&w, "", "to", a->to, strlen(a->to));
    if (!rc) rc = xpb_writer_start(&w, ns, name);
    if (!rc && a->node) rc = xpb_writer_attr(&w, "", "node", a->node, strlen(a->node));
    if (!rc) rc = xpb_writer_end(&w);
    if (!rc) rc = xpb_writer_end(&w);
    return rc;
}

static void print_stanza_error(ctl *c, const xpb_stanza *st)
{
    char cond[64] = "undefined-condition";
    const Xpb__V1__StanzaError *e = st->error;
    if (e && e->has_condition)
        ctl_enum_short(&xpb__v1__error_condition__descriptor, (int)e->condition, "CONDITION_", cond,
                       sizeof(cond));
    fprintf(stderr, "xpbctl: %s: error response: %s%s%s\n", c->cmd, cond,
            e && e->text && e->text->text ? ": " : "",
            e && e->text && e->text->text ? e->text->text : "");
}

static int print_xml_line(ctl *c, const xpb_stanza *st)
{
    xpb_buf b;
    char err[256] = "";
    xpb_buf_init(&b, 0);
    int rc = xpb_stanza_to_xml(&b, st, "", NULL, err, sizeof(err));
    if (!rc) {
        fwrite(b.data, 1, b.len, stdout);
        putchar('\n');
    } else {
        fprintf(stderr, "xpbctl: %s: the response cannot be written as XML (%s); as JSON:\n",
                c->cmd, err[0] ? err : xpb_strerror(rc));
        rc = ctl_print_json(&st->base);
    }
    xpb_buf_free(&b);
    return rc;
}

static int print_iq_result(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_IQ_RESULT) return ctl_missing_result(c);
    const xpb_stanza *st = resp->iq_result;
    int rc = c->json ? ctl_print_json(&st->base) : print_xml_line(c, st);
    if (st->has_type && st->type == XPB__V1__STANZA_TYPE__TYPE_ERROR) {
        print_stanza_error(c, st);
        rc = XPBCTL_EXIT_FAIL;
    }
    return rc;
}

static int iq_stanza(ctl *c, const iq_args *a, xpb_arena *arena, xpb_stanza **st)
{
    xpb_buf xml;
    xpb_buf_init(&xml, 0);
    int rc = 0;
    if (a->xml)
        rc = ctl_stanza_from_text(c->cmd, arena, a->xml, strlen(a->xml), st);
    else if (build_iq_xml(a, &xml))
        rc = XPBCTL_EXIT_FAIL;
    else
        rc = ctl_stanza_from_text(c->cmd, arena, xml.data, xml.len, st);
    xpb_buf_free(&xml);
    if (rc) return rc;
    if ((*st)->kind != XPB__V1__KIND__KIND_IQ || ((*st)->type != XPB__V1__STANZA_TYPE__TYPE_GET &&
                                                  (*st)->type != XPB__V1__STANZA_TYPE__TYPE_SET)) {
        fprintf(stderr, "xpbctl: iq: --xml must be an <iq/> of type get or set\n");
        return XPBCTL_EXIT_USAGE;
    }
    if (a->xml && a->to) (*st)->to = (char *)a->to;
    return 0;
}

static int send_iq(ctl *c, const iq_args *a, xpb_arena *arena)
{
    xpb_stanza *st = NULL;
    int rc = iq_stanza(c, a, arena, &st);
    if (rc) return rc;
    Xpb__V1__SendIq q = XPB__V1__SEND_IQ__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    q.stanza = st;
    q.has_timeout_ms = a->iq_timeout.set;
    q.timeout_ms = (uint32_t)a->iq_timeout.v;
    r.op_case = XPB__V1__REQUEST__OP_IQ;
    r.iq = &q;
    return ctl_request(c, &r, print_iq_result);
}

static int run_iq(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const iq_args *a = args;
    ctl c;
    int rc = check_iq(cmd, a);
    if (!rc) rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    long long bridge_wait = a->iq_timeout.set ? a->iq_timeout.v : IQ_DEFAULT_WAIT_MS;
    if (!c.timeout_set && c.timeout_ms < bridge_wait + IQ_MARGIN_MS)
        c.timeout_ms = (long)(bridge_wait + IQ_MARGIN_MS);
    xpb_arena *arena = xpb_arena_new(0);
    rc = arena ? send_iq(&c, a, arena) : XPBCTL_EXIT_FAIL;
    xpb_arena_free(arena);
    return rc;
}

const xpbctl_command xpbctl_cmd_iq = {
    .page =
        {
            .name = "iq",
            .summary = "send an iq (ping, disco, version, or any XML) and print the response",
            .usage = "xpbctl iq --account JID --to JID (--ping | --disco-info | --disco-items | "
                     "--version | --xml IQ)",
            .synopsis =
                "    xpbctl iq --account JID --to JID (--ping | --disco-info [--node N] |\n"
                "              --disco-items [--node N] | --version) [--iq-timeout MS] [OPTIONS]\n"
                "    xpbctl iq --account JID --xml IQ [--to JID] [--iq-timeout MS] [OPTIONS]\n",
            .description =
                "    Sends an iq of type get (request \"iq\" of proto/xpb/v1/bus.proto) and\n"
                "    waits for its response (RFC 6120 §8.2.3): XEP-0199 ping, XEP-0030\n"
                "    disco#info or disco#items, XEP-0092 software version, or any iq of type\n"
                "    get or set given as XML (with --to, the XML's 'to' is replaced).\n"
                "\n"
                "    The response stanza is printed as XML on one line (as a JSON object with\n"
                "    --json). A response of type error is printed too, and its condition and\n"
                "    text go to standard error.\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS
            "    1  also: the response is of type error, or the bridge timed out waiting\n"
            "       for it (ERR_TIMEOUT)\n",
            .examples = "    xpbctl iq --account bot@example.com --to example.com --ping\n"
                        "    xpbctl iq --account bot@example.com --to conference.example.com "
                        "--disco-items\n"
                        "    xpbctl iq --account bot@example.com --json \\\n"
                        "        --xml \"<iq type='get' to='example.com'><time "
                        "xmlns='urn:xmpp:time'/></iq>\"\n",
        },
    .opts = iq_opts,
    .args_size = sizeof(iq_args),
    .bus = true,
    .run = run_iq,
};
