/* `xpbctl sessions`: the bridge's sessions with their counters (request
 * "list" of bus.proto). */
#include <inttypes.h>
#include <stdio.h>

#include "bus_client.h"
#include "output.h"

static const xpbctl_opt sessions_opts[] = {{0}}; /* only the global options */

static void print_session(const Xpb__V1__SessionInfo *s)
{
    char st[32] = "unspecified";
    if (s->has_state)
        ctl_enum_short(&xpb__v1__session_state__state__descriptor, (int)s->state, "STATE_", st,
                       sizeof(st));
    ctl_put_col(s->account, 28);
    ctl_put_col(s->jid, 40);
    printf("%-12s %8" PRIu64 " %8" PRIu64 " %6" PRIu32 " %7" PRIu32 " %10" PRIu64 " %11" PRIu64 " ",
           st, s->stanzas_in, s->stanzas_out, s->queued, s->unacked, s->reconnects, s->resumptions);
    for (size_t r = 0; r < s->n_room; r++) {
        if (r) putchar(',');
        ctl_put_clean(s->room[r], 256);
    }
    if (!s->n_room) putchar('-');
    putchar('\n');
}

static int print_sessions(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_SESSIONS) return ctl_missing_result(c);
    const Xpb__V1__SessionList *l = resp->sessions;
    if (c->json) return ctl_print_json(&l->base);
    printf("%-28s %-40s %-12s %8s %8s %6s %7s %10s %11s %s\n", "ACCOUNT", "JID", "STATE", "IN",
           "OUT", "QUEUED", "UNACKED", "RECONNECTS", "RESUMPTIONS", "ROOMS");
    for (size_t i = 0; i < l->n_session; i++)
        print_session(l->session[i]);
    return 0;
}

static int run_sessions(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    (void)args;
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    Xpb__V1__ListSessions l = XPB__V1__LIST_SESSIONS__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_LIST;
    r.list = &l;
    return ctl_request(&c, &r, print_sessions);
}

const xpbctl_command xpbctl_cmd_sessions = {
    .page =
        {
            .name = "sessions",
            .summary = "list the bridge's sessions with their counters",
            .usage = "xpbctl sessions [--json]",
            .synopsis = "    xpbctl sessions [OPTIONS]\n",
            .description =
                "    Request \"list\" of proto/xpb/v1/bus.proto. Prints a table with one row\n"
                "    per session: account, bound JID, state (connecting, online, resumed,\n"
                "    disconnected, stopped), stanzas in and out, stanzas queued while not\n"
                "    online, stanzas sent but not yet acknowledged (XEP-0198), reconnects,\n"
                "    stream resumptions, and the joined rooms.\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS,
            .examples = "    xpbctl sessions\n"
                        "    xpbctl sessions --json | jq '.session[] | select(.state != "
                        "\"STATE_ONLINE\")'\n",
        },
    .opts = sessions_opts,
    .args_size = 1, /* no options of its own */
    .bus = true,
    .run = run_sessions,
};
