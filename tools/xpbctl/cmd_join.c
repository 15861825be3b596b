/* `xpbctl join`: enter a multi-user chat room, which the bridge rejoins
 * after reconnects (request "join" of bus.proto; XEP-0045 §7.2). */
#include <stdint.h>

#include "bus_client.h"

typedef struct join_args {
    const char *account, *room, *nick, *password;
    xpbctl_num history;
} join_args;

static const xpbctl_opt join_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(join_args, account),
     .help = "the bridged account"},
    {.name = "--room",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(join_args, room),
     .help = "the room's bare JID"},
    {.name = "--nick",
     .arg = "NICK",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(join_args, nick),
     .help = "the nickname in the room"},
    {.name = "--password",
     .arg = "P",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(join_args, password),
     .help = "the room's password"},
    {.name = "--history",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 0,
     .max = INT32_MAX,
     .offset = XPBCTL_AT(join_args, history),
     .help = "ask for at most N messages of history (XEP-0045\n"
             "§7.2.13; 0: none)"},
    {0},
};

static int run_join(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const join_args *a = args;
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    Xpb__V1__JoinRoom j = XPB__V1__JOIN_ROOM__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    j.room = (char *)a->room;
    j.nick = (char *)a->nick;
    j.password = (char *)a->password;
    j.has_history_maxstanzas = a->history.set;
    j.history_maxstanzas = (int32_t)a->history.v;
    r.op_case = XPB__V1__REQUEST__OP_JOIN;
    r.join = &j;
    return ctl_request(&c, &r, ctl_print_ok);
}

const xpbctl_command xpbctl_cmd_join = {
    .page =
        {
            .name = "join",
            .summary = "join a MUC room (rejoined by the bridge after reconnects)",
            .usage = "xpbctl join --account JID --room ROOM@SERVICE --nick NICK [--password P] "
                     "[--history N]",
            .synopsis =
                "    xpbctl join --account JID --room ROOM@SERVICE --nick NICK [--password P]\n"
                "                [--history N] [OPTIONS]\n",
            .description =
                "    Request \"join\" of proto/xpb/v1/bus.proto: enters the room (XEP-0045\n"
                "    §7.2). The bridge rejoins it after every reconnect and checks it is\n"
                "    still joined with XEP-0410 self-pings. Room messages arrive as events\n"
                "    of kind message with type groupchat; send to the room with\n"
                "    xpbctl send --type groupchat --to ROOM@SERVICE. Prints \"ok\".\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS,
            .examples =
                "    xpbctl join --account bot@example.com --room ops@conference.example.com "
                "\\\n"
                "        --nick bot --history 0\n",
        },
    .opts = join_opts,
    .args_size = sizeof(join_args),
    .bus = true,
    .run = run_join,
};
