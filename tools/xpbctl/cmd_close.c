/* `xpbctl close`: end an account's session in the bridge (request "close"
 * of bus.proto). */
#include "bus_client.h"

typedef struct close_args {
    const char *account;
} close_args;

static const xpbctl_opt close_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(close_args, account),
     .help = "the bridged account"},
    {0},
};

static int run_close(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const close_args *a = args;
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    Xpb__V1__CloseSession s = XPB__V1__CLOSE_SESSION__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_CLOSE;
    r.close = &s;
    return ctl_request(&c, &r, ctl_print_ok);
}

const xpbctl_command xpbctl_cmd_close = {
    .page =
        {
            .name = "close",
            .summary = "close an account's session",
            .usage = "xpbctl close --account JID",
            .synopsis = "    xpbctl close --account JID [OPTIONS]\n",
            .description =
                "    Request \"close\" of proto/xpb/v1/bus.proto: the bridge sends\n"
                "    unavailable presence, closes the stream (RFC 6120 §4.4) and forgets the\n"
                "    session; a state event \"stopped\" follows. Prints \"ok\".\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS,
            .examples = "    xpbctl close --account bot@example.com\n",
        },
    .opts = close_opts,
    .args_size = sizeof(close_args),
    .bus = true,
    .run = run_close,
};
