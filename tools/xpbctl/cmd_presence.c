/* `xpbctl presence`: an account's broadcast presence, directed presence or
 * subscription handling (request "presence" of bus.proto; RFC 6121). */
#include "bus_client.h"

typedef struct presence_args {
    const char *account, *status, *to;
    xpbctl_num show, priority, type;
    bool unavailable;
} presence_args;

static const xpbctl_choice shows[] = {
    {"away", XPB__V1__SHOW__SHOW_AWAY},
    {"chat", XPB__V1__SHOW__SHOW_CHAT},
    {"dnd", XPB__V1__SHOW__SHOW_DND},
    {"xa", XPB__V1__SHOW__SHOW_XA},
    {NULL, 0},
};

static const xpbctl_choice subscription_types[] = {
    {"subscribe", XPB__V1__STANZA_TYPE__TYPE_SUBSCRIBE},
    {"subscribed", XPB__V1__STANZA_TYPE__TYPE_SUBSCRIBED},
    {"unsubscribe", XPB__V1__STANZA_TYPE__TYPE_UNSUBSCRIBE},
    {"unsubscribed", XPB__V1__STANZA_TYPE__TYPE_UNSUBSCRIBED},
    {NULL, 0},
};

static const xpbctl_opt presence_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(presence_args, account),
     .help = "the bridged account"},
    {.name = "--show",
     .arg = "S",
     .kind = XPBCTL_CHOICE,
     .choices = shows,
     .offset = XPBCTL_AT(presence_args, show),
     .help = "availability sub-state (RFC 6121 §4.7.2.1)"},
    {.name = "--status",
     .arg = "TEXT",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(presence_args, status),
     .help = "human-readable status (RFC 6121 §4.7.2.2)"},
    {.name = "--priority",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = -128,
     .max = 127,
     .offset = XPBCTL_AT(presence_args, priority),
     .help = "priority (RFC 6121 §4.7.2.3)"},
    {.name = "--unavailable",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(presence_args, unavailable),
     .help = "go offline (type unavailable) but keep the session"},
    {.name = "--to",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(presence_args, to),
     .help = "directed presence to this entity"},
    {.name = "--type",
     .arg = "T",
     .kind = XPBCTL_CHOICE,
     .choices = subscription_types,
     .offset = XPBCTL_AT(presence_args, type),
     .help = "subscription request or answer (needs --to)"},
    {0},
};

static int check_presence(const xpbctl_command *cmd, const presence_args *a)
{
    if (a->type.set && !a->to) return xpbctl_usage_error(&cmd->page, "--type needs --to", NULL);
    if (a->type.set && (a->show.set || a->status || a->priority.set || a->unavailable))
        return xpbctl_usage_error(
            &cmd->page,
            "--type cannot be combined with --show, --status, --priority or --unavailable", NULL);
    return 0;
}

static void fill_presence(const presence_args *a, Xpb__V1__SetPresence *p)
{
    p->has_show = a->show.set;
    p->show = (Xpb__V1__Show)a->show.v;
    p->status = (char *)a->status;
    p->has_priority = a->priority.set;
    p->priority = (int32_t)a->priority.v;
    p->has_unavailable = p->unavailable = a->unavailable;
    p->to = (char *)a->to;
    p->has_type = a->type.set;
    p->type = (Xpb__V1__StanzaType)a->type.v;
}

static int run_presence(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const presence_args *a = args;
    ctl c;
    int rc = check_presence(cmd, a);
    if (!rc) rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    Xpb__V1__SetPresence p = XPB__V1__SET_PRESENCE__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    fill_presence(a, &p);
    r.op_case = XPB__V1__REQUEST__OP_PRESENCE;
    r.presence = &p;
    return ctl_request(&c, &r, ctl_print_ok);
}

const xpbctl_command xpbctl_cmd_presence = {
    .page =
        {
            .name = "presence",
            .summary = "set presence, send directed presence or subscription handling",
            .usage = "xpbctl presence --account JID [--show S] [--status T] [--priority N] "
                     "[--unavailable] [--to JID [--type T]]",
            .synopsis =
                "    xpbctl presence --account JID [--show away|chat|dnd|xa] [--status TEXT]\n"
                "                    [--priority N] [--unavailable] [OPTIONS]\n"
                "    xpbctl presence --account JID --to JID [--type subscribe|subscribed|\n"
                "                    unsubscribe|unsubscribed] [OPTIONS]\n",
            .description =
                "    Request \"presence\" of proto/xpb/v1/bus.proto. Without --to, sets the\n"
                "    account's broadcast presence (RFC 6121 §4.2), which the bridge restores\n"
                "    after reconnects. With --to, sends directed presence (RFC 6121 §4.6), or\n"
                "    with --type, subscription handling (RFC 6121 §3): subscribe asks for\n"
                "    the contact's presence, subscribed approves the contact's request.\n"
                "    Prints \"ok\".\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS,
            .examples = "    xpbctl presence --account bot@example.com --show dnd --status "
                        "'Deploying'\n"
                        "    xpbctl presence --account bot@example.com --to alice@example.com "
                        "--type subscribed\n",
        },
    .opts = presence_opts,
    .args_size = sizeof(presence_args),
    .bus = true,
    .run = run_presence,
};
