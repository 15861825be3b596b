/* `xpbctl roster`: an account's roster as the bridge holds it (request
 * "roster" of bus.proto; RFC 6121 §2). */
#include <stdio.h>

#include "bus_client.h"
#include "output.h"

typedef struct roster_args {
    const char *account;
} roster_args;

static const xpbctl_opt roster_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(roster_args, account),
     .help = "the bridged account"},
    {0},
};

static void print_item(const Xpb__V1__RosterItem *it)
{
    char sub[32] = "none", col[48];
    if (it->has_subscription)
        ctl_enum_short(&xpb__v1__roster_item__subscription__descriptor, (int)it->subscription,
                       "SUBSCRIPTION_", sub, sizeof(sub));
    snprintf(col, sizeof(col), "%s%s", sub,
             it->has_ask_subscribe && it->ask_subscribe ? "+ask" : "");
    ctl_put_col(it->jid, 32);
    ctl_put_col(it->name, 20);
    printf("%-14s ", col);
    for (size_t g = 0; g < it->n_group; g++) {
        if (g) putchar(',');
        ctl_put_clean(it->group[g], 256);
    }
    putchar('\n');
}

static int print_roster(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_ROSTER) return ctl_missing_result(c);
    const Xpb__V1__RosterQuery *q = resp->roster;
    if (c->json) return ctl_print_json(&q->base);
    printf("%-32s %-20s %-14s %s\n", "JID", "NAME", "SUBSCRIPTION", "GROUPS");
    for (size_t i = 0; i < q->n_item; i++)
        print_item(q->item[i]);
    return 0;
}

static int run_roster(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const roster_args *a = args;
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    Xpb__V1__GetRoster q = XPB__V1__GET_ROSTER__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_ROSTER;
    r.roster = &q;
    return ctl_request(&c, &r, print_roster);
}

const xpbctl_command xpbctl_cmd_roster = {
    .page =
        {
            .name = "roster",
            .summary = "print an account's roster",
            .usage = "xpbctl roster --account JID",
            .synopsis = "    xpbctl roster --account JID [OPTIONS]\n",
            .description =
                "    Request \"roster\" of proto/xpb/v1/bus.proto: the account's roster\n"
                "    (RFC 6121 §2) as the bridge holds it. Prints one line per item: JID,\n"
                "    name (\"-\" when none), subscription (none, to, from, both; \"+ask\" when\n"
                "    a subscription request is pending) and groups separated by commas.\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS,
            .examples = "    xpbctl roster --account bot@example.com\n"
                        "    xpbctl roster --account bot@example.com --json | jq '.item[].jid'\n",
        },
    .opts = roster_opts,
    .args_size = sizeof(roster_args),
    .bus = true,
    .run = run_roster,
};
