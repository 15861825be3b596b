/* `xpb-archive search`: full-text search (SQLite FTS5) over the archived
 * bodies (a corrected message by its latest text; retracted ones are not
 * found), with filters, newest first or by relevance, as lines or JSON. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "output.h"
#include "xa_cmd.h"
#include "xa_json.h"

typedef struct search_args {
    const char *db, *with, *account, *since, *until, *query;
    xpbctl_num limit, order;
    bool json;
} search_args;

enum { ORDER_RECENCY, ORDER_RELEVANCE };
static const xpbctl_choice orders[] = {{"recency", ORDER_RECENCY},
                                       {"relevance", ORDER_RELEVANCE},
                                       {NULL, 0}};

static const xpbctl_opt search_opts[] = {
    XA_DB_OPT(search_args),
    {.name = "--with",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .check = xa_bare_check,
     .offset = XPBCTL_AT(search_args, with),
     .help = "only the conversation with JID (a peer or a room)"},
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .check = xa_bare_check,
     .offset = XPBCTL_AT(search_args, account),
     .help = "only this account's messages"},
    {.name = "--since",
     .arg = "TIME",
     .kind = XPBCTL_STR,
     .check = xa_time_check,
     .offset = XPBCTL_AT(search_args, since),
     .help = "only messages at or after TIME (YYYY-MM-DD or\n"
             "YYYY-MM-DDThh:mm:ssZ)"},
    {.name = "--until",
     .arg = "TIME",
     .kind = XPBCTL_STR,
     .check = xa_time_check,
     .offset = XPBCTL_AT(search_args, until),
     .help = "only messages before TIME"},
    {.name = "--limit",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = 1000000000,
     .offset = XPBCTL_AT(search_args, limit),
     .help = "at most N results (default 100)"},
    {.name = "--order",
     .arg = "ORDER",
     .kind = XPBCTL_CHOICE,
     .choices = orders,
     .offset = XPBCTL_AT(search_args, order),
     .help = "newest first (recency, the default) or best match\n"
             "first (relevance: FTS5's bm25 rank)"},
    {.name = "--json",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(search_args, json),
     .help = "one JSON object per result"},
    {.kind = XPBCTL_WORD,
     .arg = "QUERY",
     .required = true,
     .offset = XPBCTL_AT(search_args, query),
     .help = "the words to find (all of them; quote the query)"},
    {0},
};

static int print_row(void *ud, const xa_row *r)
{
    const search_args *a = ud;
    if (a->json) return xa_json_row(r) ? -1 : 0;
    char t[40];
    xa_format_stamp(r->time_us - r->time_us % 1000000, t, sizeof t);
    printf("%s %s %s %s ", t, r->account, r->direction == XA_DIR_OUT ? "→" : "←", r->conversation);
    if (r->groupchat && r->sender) printf("(%s) ", r->sender);
    ctl_put_clean(r->edited_body ? r->edited_body : r->body, 400);
    puts(r->edited_body ? " [corrected]" : "");
    return 0;
}

static int run_search(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const search_args *a = argp;
    xa_db *db = xa_cmd_open("search", a->db, XA_OPEN_READ);
    if (!db) return XA_EXIT_FAIL;
    xa_filter f = {.with = a->with,
                   .account = a->account,
                   .since_us = a->since ? xa_time_value(a->since) : 0,
                   .until_us = a->until ? xa_time_value(a->until) : 0,
                   .limit = a->limit.set ? a->limit.v : 100,
                   .relevance = a->order.set && a->order.v == ORDER_RELEVANCE};
    char err[XA_ERR_MAX];
    int rc = xa_search(db, a->query, &f, print_row, (void *)a, err, sizeof err);
    xa_db_close(db);
    if (rc) fprintf(stderr, "xpb-archive: search: %s\n", rc == -1 ? "output failed" : err);
    if (fflush(stdout)) rc = -1;
    return rc ? XA_EXIT_FAIL : XA_EXIT_OK;
}

const xpbctl_command xa_cmd_search = {
    .page =
        {
            .name = "search",
            .summary = "find archived messages by words in their body",
            .usage = "xpb-archive search --db FILE [--with JID] [--account JID] [--since TIME] "
                     "[--until TIME] [--limit N] [--order recency|relevance] [--json] QUERY",
            .synopsis = "    xpb-archive search --db FILE [--with JID] [--account JID]\n"
                        "                       [--since TIME] [--until TIME] [--limit N]\n"
                        "                       [--order recency|relevance] [--json] QUERY\n",
            .description =
                "    Prints the messages whose body holds every word of QUERY (SQLite FTS5,\n"
                "    unicode61 tokenizer: case and diacritics do not matter). Words are\n"
                "    taken as typed: FTS5 operators are not interpreted. A corrected message\n"
                "    is found by its latest text; a retracted one is not found.\n"
                "    A line per message:\n"
                "        TIME ACCOUNT →|← CONVERSATION [(NICK)] BODY [corrected]\n"
                "    With --json, one object per message: account, conversation, direction,\n"
                "    sender, time, body, edited_body, stanza_id, stanza_id_by, origin_id.\n",
            .exit_status = XA_EXIT_STATUS,
            .examples = "    xpb-archive search --db archive.db invoice\n"
                        "    xpb-archive search --db archive.db --with room@muc.example.com "
                        "--order relevance 'release date'\n",
        },
    .opts = search_opts,
    .args_size = sizeof(search_args),
    .run = run_search,
};
