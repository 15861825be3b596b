/* `xpbctl status`: the bridge's version, uptime and counters (request
 * "status" of bus.proto); also a quick "is the bridge up" check. */
#include <inttypes.h>
#include <stdio.h>

#include "bus_client.h"
#include "output.h"

static const xpbctl_opt status_opts[] = {{0}}; /* only the global options */

static int print_status(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_STATUS) return ctl_missing_result(c);
    const Xpb__V1__BridgeStatus *s = resp->status;
    if (c->json) return ctl_print_json(&s->base);
    fputs("version: ", stdout);
    ctl_put_clean(s->version ? s->version : "unknown", 64);
    printf("\nuptime: %" PRIu64 " s\nsessions: %" PRIu32 " (%" PRIu32 " online)\n"
           "events published: %" PRIu64 "\nlast seq: %" PRIu64 "\n",
           s->uptime_s, s->sessions, s->sessions_online, s->events_published, s->last_seq);
    return 0;
}

static int run_status(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    (void)args;
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    Xpb__V1__GetStatus s = XPB__V1__GET_STATUS__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_STATUS;
    r.status = &s;
    return ctl_request(&c, &r, print_status);
}

const xpbctl_command xpbctl_cmd_status = {
    .page =
        {
            .name = "status",
            .summary = "print the bridge's status",
            .usage = "xpbctl status [--json]",
            .synopsis = "    xpbctl status [OPTIONS]\n",
            .description =
                "    Request \"status\" of proto/xpb/v1/bus.proto. Prints the bridge's\n"
                "    version, uptime, sessions (and how many are online), events published\n"
                "    and the last event sequence number (compare with what a subscriber saw\n"
                "    to count lost events). Also a quick \"is the bridge up\" check.\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS,
            .examples = "    xpbctl status\n"
                        "    xpbctl status --timeout 1000 >/dev/null || echo 'bridge down'\n",
        },
    .opts = status_opts,
    .args_size = 1, /* no options of its own */
    .bus = true,
    .run = run_status,
};
